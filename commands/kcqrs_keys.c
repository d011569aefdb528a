/*
 * kcqrs_keys.c — `kcqrs-keys create|list|revoke|rotate`: manage the API keys file.
 *
 *   create --name NAME --roles ROLE[,ROLE...] [--file PATH]
 *       generates a key (kq_auth_generate_key: 256 random bits), appends
 *       "<name> <roles> <sha256-hex>" to PATH (created with mode 0600; an
 *       existing name is refused) and prints the key once on stdout. The key
 *       itself is stored nowhere: lose it and create another.
 *   list [--file PATH]
 *       prints "<name> <roles>" per key; never the hashes.
 *   revoke --name NAME [--file PATH]
 *       removes NAME's entry (kq_auth_file_change: rewrite and rename).
 *   rotate --name NAME [--file PATH]
 *       gives NAME a new key with the same roles and prints it once; the
 *       old key is refused from then on (no overlap).
 *   kek-add [--file PATH]
 *       appends a new key-encryption key "VERSION HEX" (version = highest + 1;
 *       the file is created with mode 0600) to KCQRS_KEK_FILE (kq_crypto.h).
 *   Running services follow the file (KCQRS_KEYS_RELOAD_MS, kq_auth_watch).
 *   PATH defaults to KCQRS_KEYS_FILE (var/keys).
 *
 * Exit status: 0 ok; 1 a bad or unreadable keys file, a duplicate or unknown
 * name or an I/O error (one line on stderr); 2 usage or configuration error.
 * Single-threaded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "kq_auth.h"
#include "kq_config.h"
#include "kq_crypto.h"
#include "kq_err.h"
#include "kq_rand.h"

#define PROG "kcqrs-keys"

static const char usage[] =
    "usage: " PROG " create --name NAME --roles ROLE[,ROLE...] [--file PATH]\n"
    "       " PROG " list [--file PATH]\n"
    "       " PROG " revoke --name NAME [--file PATH]\n"
    "       " PROG " rotate --name NAME [--file PATH]\n"
    "       " PROG " kek-add [--file PATH]\n"
    "\n"
    "  create   generate an API key, append its name, roles and SHA-256 to the keys\n"
    "           file (created with mode 0600) and print the key once on stdout\n"
    "  list     print the name and roles of every key (never the hashes)\n"
    "  revoke   remove the key NAME\n"
    "  rotate   give NAME a new key (same roles), print it once; the old key stops\n"
    "           working at once (no overlap: for one, create a second key, move the\n"
    "           clients, revoke the first)\n"
    "  Running services see a change within KCQRS_KEYS_RELOAD_MS, without a restart.\n"
    "  kek-add  add a key-encryption key to the KEK file (created, mode 0600, if\n"
    "           missing) with the next version: new data keys are wrapped by it from\n"
    "           the services' next start; keep the older versions (they open the keys\n"
    "           they wrapped)\n"
    "  --file   the keys file; default KCQRS_KEYS_FILE (kek-add: KCQRS_KEK_FILE)\n"
    "\n"
    "Roles: admin (implies all), writer, reader, auditor, worker.\n"
    "Names: [A-Za-z0-9._-]{1,64}; the name is the actor recorded in events.\n"
    "Exit status: 0 ok, 1 bad keys file, duplicate or unknown name or I/O error,\n"
    "2 usage or configuration error.\n";

/* Find "--opt VALUE" or "--opt=VALUE" in argv[2..]; NULL if absent. */
static int get_opt(int argc, char **argv, const char *opt, const char **out)
{
    size_t n = strlen(opt);
    *out = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], opt) == 0) {
            if (i + 1 >= argc)
                return -1;
            *out = argv[++i];
        } else if (strncmp(argv[i], opt, n) == 0 && argv[i][n] == '=') {
            *out = argv[i] + n + 1;
        }
    }
    return 0;
}

/* Every argument after the command must be one of `allowed` (with its value). */
static int check_args(int argc, char **argv, const char *const *allowed)
{
    for (int i = 2; i < argc; i++) {
        int ok = 0;
        for (size_t k = 0; allowed[k] != NULL; k++) {
            size_t n = strlen(allowed[k]);
            if (strcmp(argv[i], allowed[k]) == 0) {
                ok = 1;
                i++;
                break;
            }
            if (strncmp(argv[i], allowed[k], n) == 0 && argv[i][n] == '=') {
                ok = 1;
                break;
            }
        }
        if (!ok) {
            fprintf(stderr, PROG ": unknown argument '%s'\n", argv[i]);
            return -1;
        }
    }
    return 0;
}

static int cmd_create(int argc, char **argv, const char *default_file)
{
    static const char *const allowed[] = {"--name", "--roles", "--file", NULL};
    const char *name, *roles_s, *file;
    char key[KQ_AUTH_KEY_LEN + 1], hex[65], err[512];
    unsigned roles;
    int rc;

    if (check_args(argc, argv, allowed) != 0 || get_opt(argc, argv, "--name", &name) != 0 ||
        get_opt(argc, argv, "--roles", &roles_s) != 0 ||
        get_opt(argc, argv, "--file", &file) != 0 || name == NULL || roles_s == NULL) {
        fprintf(stderr, PROG ": create needs --name and --roles\n");
        return 2;
    }
    if (file == NULL)
        file = default_file;
    if (!kq_auth_name_valid(name)) {
        fprintf(stderr, PROG ": name '%s' does not match [A-Za-z0-9._-]{1,64}\n", name);
        return 2;
    }
    if (kq_auth_roles_parse(roles_s, strlen(roles_s), &roles, err, sizeof err) != 0) {
        fprintf(stderr, PROG ": --roles: %s\n", err);
        return 2;
    }
    if (kq_auth_generate_key(key, sizeof key, err, sizeof err) != 0 ||
        kq_auth_hash_hex(key, strlen(key), hex) != 0) {
        fprintf(stderr, PROG ": %s\n", err);
        return 1;
    }
    rc = kq_auth_file_append(file, name, roles, hex, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, PROG ": %s\n", err);
        return 1;
    }
    printf("%s\n", key);
    if (fflush(stdout) != 0) {
        fprintf(stderr,
                PROG ": writing the key to stdout failed; the entry '%s' was added, "
                     "remove it and create another\n",
                name);
        return 1;
    }
    return 0;
}

static int cmd_list(int argc, char **argv, const char *default_file)
{
    static const char *const allowed[] = {"--file", NULL};
    const char *file;
    kq_auth_keys *keys = NULL;
    char err[512], roles[64];

    if (check_args(argc, argv, allowed) != 0 || get_opt(argc, argv, "--file", &file) != 0) {
        fprintf(stderr, PROG ": list takes only --file\n");
        return 2;
    }
    if (file == NULL)
        file = default_file;
    if (kq_auth_load(file, &keys, err, sizeof err) != 0) {
        fprintf(stderr, PROG ": %s\n", err);
        return 1;
    }
    for (size_t i = 0; i < kq_auth_count(keys); i++) {
        kq_auth_roles_format(kq_auth_roles(keys, i), roles, sizeof roles);
        printf("%s %s\n", kq_auth_name(keys, i), roles);
    }
    kq_auth_free(keys);
    return 0;
}

/* revoke (rotate 0) or rotate (1) --name NAME [--file PATH] */
static int cmd_change(int argc, char **argv, const char *default_file, int rotate)
{
    static const char *const allowed[] = {"--name", "--file", NULL};
    const char *name, *file;
    char key[KQ_AUTH_KEY_LEN + 1], hex[65], err[512];

    if (check_args(argc, argv, allowed) != 0 || get_opt(argc, argv, "--name", &name) != 0 ||
        get_opt(argc, argv, "--file", &file) != 0 || name == NULL) {
        fprintf(stderr, PROG ": %s needs --name (and takes --file)\n", argv[1]);
        return 2;
    }
    if (file == NULL)
        file = default_file;
    if (rotate && (kq_auth_generate_key(key, sizeof key, err, sizeof err) != 0 ||
                   kq_auth_hash_hex(key, strlen(key), hex) != 0)) {
        fprintf(stderr, PROG ": %s\n", err);
        return 1;
    }
    if (kq_auth_file_change(file, name, rotate ? hex : NULL, err, sizeof err) != 0) {
        fprintf(stderr, PROG ": %s\n", err);
        return 1;
    }
    if (rotate) {
        printf("%s\n", key);
        if (fflush(stdout) != 0) {
            fprintf(stderr,
                    PROG ": writing the key to stdout failed; '%s' has a new key nobody knows, "
                         "rotate it again\n",
                    name);
            return 1;
        }
    }
    return 0;
}

/*
 * kek-add: append a new key-encryption key, version = highest + 1 (1 for a
 * new file, created with mode 0600). The running services pick it up at
 * their next start: new data keys are then wrapped by it, old ones stay
 * wrapped by (and need) their versions.
 */
static int cmd_kek_add(int argc, char **argv, const char *default_file)
{
    static const char *const allowed[] = {"--file", NULL};
    const char *file = NULL;
    char errstr[512], hex[2 * KQ_CRYPTO_KEY_LEN + 1];
    unsigned version = 1;
    kq_kek kek;
    FILE *f;
    int fd, rc;

    if (check_args(argc, argv, allowed) != 0 || get_opt(argc, argv, "--file", &file) != 0) {
        fputs(usage, stderr);
        return 2;
    }
    if (file == NULL)
        file = default_file;
    rc = kq_kek_load(file, &kek, errstr, sizeof errstr);
    if (rc == 0) {
        if (kek.n >= KQ_KEK_MAX || kek.current >= 65535) {
            fprintf(stderr, PROG ": %s holds the most versions it may\n", file);
            kq_kek_wipe(&kek);
            return 1;
        }
        version = kek.current + 1u;
    } else if (rc != KQ_ENOTFOUND) {
        fprintf(stderr, PROG ": %s\n", errstr);
        return 1;
    }
    kq_kek_wipe(&kek);
    if (kq_rand_hex(hex, KQ_CRYPTO_KEY_LEN) != 0) {
        fprintf(stderr, PROG ": no randomness\n");
        return 1;
    }
    if ((fd = open(file, O_WRONLY | O_APPEND | O_CREAT, 0600)) < 0 ||
        (f = fdopen(fd, "a")) == NULL) {
        fprintf(stderr, PROG ": %s: %s\n", file, strerror(errno));
        if (fd >= 0)
            close(fd);
        return 1;
    }
    if (version == 1)
        fputs("# kcqrs key-encryption keys: VERSION HEX (32 bytes); the highest version wraps new "
              "data keys\n",
              f);
    fprintf(f, "%u %s\n", version, hex);
    memset(hex, 0, sizeof hex);
    if (fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0) {
        fprintf(stderr, PROG ": %s: %s\n", file, strerror(errno));
        return 1;
    }
    printf("KEK version %u added to %s\n", version, file);
    return 0;
}

int main(int argc, char **argv)
{
    kq_config cfg;
    char errstr[512];
    int rc;

    if (kq_config_handle_flags(argc, argv, PROG, usage))
        return 0;
    if (kq_config_load_and_init_log(&cfg, PROG, errstr, sizeof errstr)) {
        fprintf(stderr, PROG ": %s\n", errstr);
        return 2;
    }
    if (argc >= 2 && strcmp(argv[1], "create") == 0) {
        rc = cmd_create(argc, argv, cfg.keys_file);
    } else if (argc >= 2 && strcmp(argv[1], "list") == 0) {
        rc = cmd_list(argc, argv, cfg.keys_file);
    } else if (argc >= 2 && strcmp(argv[1], "revoke") == 0) {
        rc = cmd_change(argc, argv, cfg.keys_file, 0);
    } else if (argc >= 2 && strcmp(argv[1], "rotate") == 0) {
        rc = cmd_change(argc, argv, cfg.keys_file, 1);
    } else if (argc >= 2 && strcmp(argv[1], "kek-add") == 0) {
        rc = cmd_kek_add(argc, argv, cfg.kek_file);
    } else {
        fputs(usage, stderr);
        rc = 2;
    }
    kq_config_free(&cfg);
    return rc;
}

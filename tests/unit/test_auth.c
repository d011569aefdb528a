/* test_auth.c — API keys: generation, keys file parsing, appending and changing, lookup,
 * roles, reload. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kq_auth.h"
#include "kq_err.h"

#define H1 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" /* sha256("abc") */
#define H2 "0000000000000000000000000000000000000000000000000000000000000002"

static void test_hash_vector(void **state)
{
    char hex[65];
    (void)state;
    assert_int_equal(kq_auth_hash_hex("abc", 3, hex), 0);
    assert_string_equal(hex, H1);
}

static int b64url_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

#define NGEN 1000

static void test_generate_unique(void **state)
{
    static char keys[NGEN][KQ_AUTH_KEY_LEN + 1];
    char err[128];
    unsigned seen[KQ_AUTH_KEY_LEN][4] = {{0}}; /* 128-bit set of characters per position */

    (void)state;
    for (int i = 0; i < NGEN; i++) {
        assert_int_equal(kq_auth_generate_key(keys[i], sizeof keys[i], err, sizeof err), 0);
        assert_int_equal(strlen(keys[i]), KQ_AUTH_KEY_LEN);
        assert_memory_equal(keys[i], "kq_", 3);
        for (int j = 3; j < KQ_AUTH_KEY_LEN; j++) {
            unsigned char c = (unsigned char)keys[i][j];
            assert_true(b64url_char((char)c));
            seen[j][c >> 5] |= 1u << (c & 31);
        }
    }
    /* 43 base64url characters carry 256 random bits (>= 128 required): no two keys equal. */
    for (int i = 0; i < NGEN; i++)
        for (int j = i + 1; j < NGEN; j++)
            assert_string_not_equal(keys[i], keys[j]);
    /* Every position but the last varies over (almost) the whole alphabet. */
    for (int j = 3; j < KQ_AUTH_KEY_LEN - 1; j++) {
        int n = 0;
        for (int w = 0; w < 4; w++)
            n += __builtin_popcount(seen[j][w]);
        assert_true(n >= 50);
    }
    /* Too small a buffer is refused. */
    assert_int_equal(kq_auth_generate_key(keys[0], KQ_AUTH_KEY_LEN, err, sizeof err), KQ_ERANGE);
}

static void test_parse_ok(void **state)
{
    const char text[] =
        "# keys\n"
        "\n"
        "   # indented comment\n"
        "alice admin " H1 "\n"
        "bob\twriter,reader\t" H2 "\r\n"
        "svc.worker-1 worker 1111111111111111111111111111111111111111111111111111111111111111";
    kq_auth_keys *k = NULL;
    char err[256] = "";

    (void)state;
    assert_int_equal(kq_auth_parse(text, strlen(text), "t", &k, err, sizeof err), 0);
    assert_int_equal(kq_auth_count(k), 3);
    assert_string_equal(kq_auth_name(k, 0), "alice");
    assert_int_equal(kq_auth_roles(k, 0), KQ_AUTH_ROLE_ADMIN);
    assert_string_equal(kq_auth_name(k, 1), "bob");
    assert_int_equal(kq_auth_roles(k, 1), KQ_AUTH_ROLE_WRITER | KQ_AUTH_ROLE_READER);
    assert_string_equal(kq_auth_name(k, 2), "svc.worker-1");
    assert_int_equal(kq_auth_roles(k, 2), KQ_AUTH_ROLE_WORKER);
    assert_null(kq_auth_name(k, 3));
    kq_auth_free(k);

    assert_int_equal(kq_auth_parse("", 0, "t", &k, err, sizeof err), 0);
    assert_int_equal(kq_auth_count(k), 0);
    kq_auth_free(k);
}

static void test_parse_errors(void **state)
{
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"a admin " H1 "\nb admin\n", "f:2: expected 3 fields"},
        {"a admin " H1 " extra\n", "f:1: expected 3 fields"},
        {"# c\n\na/b admin " H1 "\n", "f:3: name 'a/b' does not match"},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa admin " H1 "\n",
         "f:1: name"},
        {"a root " H1 "\n", "f:1: unknown role 'root'"},
        {"a admin,admin " H1 "\n", "f:1: role 'admin' given twice"},
        {"a writer, " H1 "\n", "f:1: unknown role ''"},
        {"a writer,,reader " H1 "\n", "f:1: unknown role ''"},
        {"a admin abc\n", "f:1: hash must be 64 lowercase hex digits (SHA-256), found 3"},
        {"a admin BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD\n",
         "f:1: hash must be 64 lowercase hex"},
        {"a admin " H1 "\nb reader " H2 "\na writer " H2 "\n", "f:3: duplicate name 'a'"},
        {"a admin " H1 "\nb reader " H1 "\n", "f:2: same key hash as entry 'a'"},
    };
    char err[256];
    kq_auth_keys *k = NULL;

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = '\0';
        assert_int_equal(
            kq_auth_parse(cases[i].text, strlen(cases[i].text), "f", &k, err, sizeof err),
            KQ_EINVAL);
        if (strstr(err, cases[i].want) == NULL)
            fail_msg("case %zu: got '%s', want '%s'", i, err, cases[i].want);
        assert_null(k);
    }
    /* A NUL byte inside a line. */
    {
        const char t[] = "a admin " H1 "\nb\0 reader " H2 "\n";
        assert_int_equal(kq_auth_parse(t, sizeof t - 1, "f", &k, err, sizeof err), KQ_EINVAL);
        assert_non_null(strstr(err, "f:2: NUL"));
    }
    /* A missing file names the path. */
    assert_int_equal(kq_auth_load("/nonexistent/keys", &k, err, sizeof err), KQ_EIO);
    assert_non_null(strstr(err, "/nonexistent/keys"));
}

static void test_lookup(void **state)
{
    char k1[64], k2[64], k3[64], h1[65], h2[65], err[256], text[512];
    kq_auth_keys *keys = NULL;
    const char *name = NULL;
    unsigned roles = 0;

    (void)state;
    assert_int_equal(kq_auth_generate_key(k1, sizeof k1, err, sizeof err), 0);
    assert_int_equal(kq_auth_generate_key(k2, sizeof k2, err, sizeof err), 0);
    assert_int_equal(kq_auth_generate_key(k3, sizeof k3, err, sizeof err), 0);
    kq_auth_hash_hex(k1, strlen(k1), h1);
    kq_auth_hash_hex(k2, strlen(k2), h2);
    snprintf(text, sizeof text, "one reader %s\ntwo writer,auditor %s\n", h1, h2);
    assert_int_equal(kq_auth_parse(text, strlen(text), "t", &keys, err, sizeof err), 0);

    assert_int_equal(kq_auth_lookup(keys, k1, strlen(k1), &name, &roles), 0);
    assert_string_equal(name, "one");
    assert_int_equal(roles, KQ_AUTH_ROLE_READER);
    assert_int_equal(kq_auth_lookup(keys, k2, strlen(k2), &name, &roles), 0);
    assert_string_equal(name, "two");
    assert_int_equal(roles, KQ_AUTH_ROLE_WRITER | KQ_AUTH_ROLE_AUDITOR);

    name = NULL;
    assert_int_equal(kq_auth_lookup(keys, k3, strlen(k3), &name, &roles), KQ_ENOTFOUND);
    assert_null(name);
    assert_int_equal(kq_auth_lookup(keys, k1, strlen(k1) - 1, &name, &roles), KQ_ENOTFOUND);
    assert_int_equal(kq_auth_lookup(keys, h1, 64, &name, &roles),
                     KQ_ENOTFOUND); /* the hash itself */
    assert_int_equal(kq_auth_lookup(keys, "", 0, &name, &roles), KQ_ENOTFOUND);
    {
        char big[KQ_AUTH_TOKEN_MAX + 2];
        memset(big, 'a', sizeof big);
        assert_int_equal(kq_auth_lookup(keys, big, sizeof big, &name, &roles), KQ_ENOTFOUND);
    }
    assert_int_equal(kq_auth_lookup(NULL, k1, strlen(k1), &name, &roles), KQ_ENOTFOUND);
    kq_auth_free(keys);
}

static void test_roles(void **state)
{
    unsigned r = 0;
    char s[64], err[128];

    (void)state;
    assert_true(kq_auth_has_role(KQ_AUTH_ROLE_WRITER, KQ_AUTH_ROLE_WRITER));
    assert_false(kq_auth_has_role(KQ_AUTH_ROLE_READER, KQ_AUTH_ROLE_WRITER));
    assert_false(kq_auth_has_role(KQ_AUTH_ROLE_WRITER, KQ_AUTH_ROLE_AUDITOR));
    assert_false(kq_auth_has_role(0, KQ_AUTH_ROLE_READER));
    assert_true(kq_auth_has_role(KQ_AUTH_ROLE_ADMIN, KQ_AUTH_ROLE_AUDITOR));
    assert_true(kq_auth_has_role(KQ_AUTH_ROLE_ADMIN, KQ_AUTH_ROLE_WORKER | KQ_AUTH_ROLE_WRITER));
    assert_true(kq_auth_has_role(KQ_AUTH_ROLE_WRITER | KQ_AUTH_ROLE_READER,
                                 KQ_AUTH_ROLE_WRITER | KQ_AUTH_ROLE_READER));
    assert_false(kq_auth_has_role(KQ_AUTH_ROLE_WRITER, KQ_AUTH_ROLE_WRITER | KQ_AUTH_ROLE_READER));

    assert_int_equal(kq_auth_roles_parse("reader,admin", 12, &r, err, sizeof err), 0);
    assert_int_equal(r, KQ_AUTH_ROLE_READER | KQ_AUTH_ROLE_ADMIN);
    kq_auth_roles_format(r, s, sizeof s);
    assert_string_equal(s, "admin,reader");
    kq_auth_roles_format(KQ_AUTH_ROLE_ALL, s, sizeof s);
    assert_string_equal(s, "admin,writer,reader,auditor,worker");
    assert_int_equal(kq_auth_roles_parse("", 0, &r, err, sizeof err), KQ_EINVAL);
    assert_int_equal(kq_auth_roles_parse("Admin", 5, &r, err, sizeof err), KQ_EINVAL);
    assert_int_equal(kq_auth_roles_parse("admin,", 6, &r, err, sizeof err), KQ_EINVAL);

    assert_true(kq_auth_name_valid("a.b_c-D9"));
    assert_false(kq_auth_name_valid(""));
    assert_false(kq_auth_name_valid("a b"));
    assert_false(kq_auth_name_valid("é"));
    assert_true(kq_auth_name_valid(
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")); /* 64 */
    assert_false(kq_auth_name_valid(
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")); /* 65 */
    assert_string_equal(kq_auth_role_name(KQ_AUTH_ROLE_AUDITOR), "auditor");
    assert_null(kq_auth_role_name(3));
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    static char buf[4096];
    size_t n;
    assert_non_null(f);
    n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_file_append(void **state)
{
    char dir[] = "/tmp/kq_auth_test.XXXXXX", path[128], err[256], before[4096];
    kq_auth_keys *k = NULL;
    struct stat st;
    FILE *f;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/keys", dir);

    assert_int_equal(kq_auth_file_append(path, "alice", KQ_AUTH_ROLE_ADMIN, H1, err, sizeof err),
                     0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(kq_auth_file_append(path, "bob", KQ_AUTH_ROLE_READER | KQ_AUTH_ROLE_WRITER, H2,
                                         err, sizeof err),
                     0);
    assert_string_equal(slurp(path), "alice admin " H1 "\nbob writer,reader " H2 "\n");

    /* Duplicate name: KQ_EEXIST, file unchanged. Duplicate hash: refused too. */
    strcpy(before, slurp(path));
    assert_int_equal(
        kq_auth_file_append(path, "alice", KQ_AUTH_ROLE_READER,
                            "3333333333333333333333333333333333333333333333333333333333333333", err,
                            sizeof err),
        KQ_EEXIST);
    assert_non_null(strstr(err, "'alice' exists already"));
    assert_int_equal(kq_auth_file_append(path, "carol", KQ_AUTH_ROLE_READER, H1, err, sizeof err),
                     KQ_EINVAL);
    assert_string_equal(slurp(path), before);
    assert_int_equal(
        kq_auth_file_append(path, "bad name", KQ_AUTH_ROLE_READER, H1, err, sizeof err), KQ_EINVAL);

    /* A file without a final newline gets one before the new entry. */
    f = fopen(path, "w");
    fputs("# hand-written\nalice admin " H1, f);
    fclose(f);
    assert_int_equal(kq_auth_file_append(path, "bob", KQ_AUTH_ROLE_READER, H2, err, sizeof err), 0);
    assert_int_equal(kq_auth_load(path, &k, err, sizeof err), 0);
    assert_int_equal(kq_auth_count(k), 2);
    assert_string_equal(kq_auth_name(k, 1), "bob");
    kq_auth_free(k);

    /* A broken file is never appended to. */
    f = fopen(path, "w");
    fputs("alice admin\n", f);
    fclose(f);
    assert_int_equal(kq_auth_file_append(path, "bob", KQ_AUTH_ROLE_READER, H2, err, sizeof err),
                     KQ_EINVAL);
    assert_non_null(strstr(err, ":1: expected 3 fields"));
    assert_string_equal(slurp(path), "alice admin\n");

    unlink(path);
    rmdir(dir);
}

static void write_file(const char *path, const char *text)
{
    char tmp[160];
    FILE *f;

    snprintf(tmp, sizeof tmp, "%s.new", path);
    f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(rename(tmp, path), 0);
}

static void test_file_change(void **state)
{
    char dir[] = "/tmp/kq_auth_test.XXXXXX", path[128], err[256], before[4096];

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/keys", dir);
    assert_int_equal(kq_auth_file_change(path, "alice", NULL, err, sizeof err), KQ_ENOTFOUND);
    write_file(path, "# keep me\nalice admin " H1 "\n\nbob  writer,reader\t" H2 "\n");

    /* rotate: same roles, the new hash, every other line as it was */
    assert_int_equal(
        kq_auth_file_change(path, "bob",
                            "4444444444444444444444444444444444444444444444444444444444444444", err,
                            sizeof err),
        0);
    assert_string_equal(slurp(path),
                        "# keep me\nalice admin " H1 "\n\nbob writer,reader "
                        "4444444444444444444444444444444444444444444444444444444444444444\n");
    /* a hash another entry has is refused; the file is unchanged */
    strcpy(before, slurp(path));
    assert_int_equal(kq_auth_file_change(path, "bob", H1, err, sizeof err), KQ_EINVAL);
    assert_string_equal(slurp(path), before);
    /* revoke */
    assert_int_equal(kq_auth_file_change(path, "alice", NULL, err, sizeof err), 0);
    assert_string_equal(slurp(path),
                        "# keep me\n\nbob writer,reader "
                        "4444444444444444444444444444444444444444444444444444444444444444\n");
    assert_int_equal(kq_auth_file_change(path, "alice", NULL, err, sizeof err), KQ_ENOTFOUND);
    assert_non_null(strstr(err, "no key named 'alice'"));
    assert_int_equal(kq_auth_file_change(path, "a b", NULL, err, sizeof err), KQ_EINVAL);
    /* a broken file is left alone */
    write_file(path, "bob writer\n");
    assert_int_equal(kq_auth_file_change(path, "bob", NULL, err, sizeof err), KQ_EINVAL);
    assert_string_equal(slurp(path), "bob writer\n");
    unlink(path);
    rmdir(dir);
}

static void test_watch_reload(void **state)
{
    char dir[] = "/tmp/kq_auth_test.XXXXXX", path[128], err[256], h[65], text[512];
    kq_auth_keys *k = NULL;
    const char *name = NULL, *kept;
    unsigned roles = 0;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/keys", dir);
    assert_int_equal(kq_auth_hash_hex("second", 6, h), 0);
    write_file(path, "alice admin " H1 "\n");
    assert_int_equal(kq_auth_load(path, &k, err, sizeof err), 0);
    assert_int_equal(kq_auth_watch(k, path, 1, err, sizeof err), 0);
    assert_int_equal(kq_auth_lookup(k, "abc", 3, &name, &roles), 0);
    kept = name;
    assert_string_equal(kept, "alice");
    assert_int_equal(kq_auth_lookup(k, "second", 6, &name, &roles), KQ_ENOTFOUND);

    /* alice rotated to "second", bob added: after the interval the old key fails */
    snprintf(text, sizeof text, "alice writer %s\nbob reader " H2 "\n", h);
    write_file(path, text);
    usleep(3000);
    assert_int_equal(kq_auth_lookup(k, "abc", 3, &name, &roles), KQ_ENOTFOUND);
    assert_int_equal(kq_auth_reloads(k), 1);
    assert_int_equal(kq_auth_lookup(k, "second", 6, &name, &roles), 0);
    assert_string_equal(name, "alice");
    assert_ptr_equal(name, kept); /* the actor handed out before stays valid: interned */
    assert_int_equal(roles, KQ_AUTH_ROLE_WRITER);

    /* a broken file keeps the keys loaded; a missing one too */
    write_file(path, "alice writer\n");
    usleep(3000);
    assert_int_equal(kq_auth_lookup(k, "second", 6, &name, &roles), 0);
    unlink(path);
    usleep(3000);
    assert_int_equal(kq_auth_lookup(k, "second", 6, &name, &roles), 0);
    assert_int_equal(kq_auth_reloads(k), 1);
    /* revoked: an empty file is a valid file */
    write_file(path, "# nobody\n");
    usleep(3000);
    assert_int_equal(kq_auth_lookup(k, "second", 6, &name, &roles), KQ_ENOTFOUND);
    assert_int_equal(kq_auth_reloads(k), 2);
    assert_string_equal(kept, "alice");

    /* interval 0: a fixed set */
    kq_auth_free(k);
    k = NULL;
    assert_int_equal(kq_auth_load(path, &k, err, sizeof err), 0);
    assert_int_equal(kq_auth_watch(k, path, 0, err, sizeof err), 0);
    write_file(path, "alice admin " H1 "\n");
    usleep(3000);
    assert_int_equal(kq_auth_lookup(k, "abc", 3, &name, &roles), KQ_ENOTFOUND);
    assert_int_equal(kq_auth_reloads(k), 0);
    kq_auth_free(k);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_vector),  cmocka_unit_test(test_generate_unique),
        cmocka_unit_test(test_parse_ok),     cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_lookup),       cmocka_unit_test(test_roles),
        cmocka_unit_test(test_file_append),  cmocka_unit_test(test_file_change),
        cmocka_unit_test(test_watch_reload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

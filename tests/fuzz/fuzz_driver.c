/*
 * fuzz_driver.c — main() for the gcc-built "*-replay" programs: runs
 * LLVMFuzzerTestOneInput over every regular file of the directories and files
 * named on the command line (directories are not recursed into; entries in
 * name order), so the checked-in corpus runs in `make test-fuzz-replay`
 * without clang. Each input is passed in its own malloc'd buffer of exactly
 * its size, as libFuzzer does, so ASan catches reads past the end.
 *
 * Exit status: 0 when every input ran (a failing input aborts the process,
 * like under libFuzzer); 1 if a path cannot be read; 2 on usage error.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0, got;

    if (f == NULL) {
        fprintf(stderr, "fuzz-replay: %s: %s\n", path, strerror(errno));
        return 1;
    }
    do {
        if (len == cap) {
            uint8_t *nb;
            cap = cap ? cap * 2 : 4096;
            if ((nb = realloc(buf, cap)) == NULL) {
                fprintf(stderr, "fuzz-replay: out of memory\n");
                free(buf);
                fclose(f);
                return 1;
            }
            buf = nb;
        }
        got = fread(buf + len, 1, cap - len, f);
        len += got;
    } while (got > 0);
    if (ferror(f)) {
        fprintf(stderr, "fuzz-replay: %s: read error\n", path);
        free(buf);
        fclose(f);
        return 1;
    }
    fclose(f);

    /* exact-size copy: the fuzz target must not read past `len` */
    uint8_t *exact = malloc(len ? len : 1);
    if (exact == NULL) {
        free(buf);
        return 1;
    }
    memcpy(exact, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_dir(const char *dir, size_t *count)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;

    if (d == NULL) {
        fprintf(stderr, "fuzz-replay: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (n == cap) {
            char **nn;
            cap = cap ? cap * 2 : 64;
            if ((nn = realloc(names, cap * sizeof *names)) == NULL) {
                rc = 1;
                break;
            }
            names = nn;
        }
        if ((names[n] = strdup(de->d_name)) == NULL) {
            rc = 1;
            break;
        }
        n++;
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (rc == 0 && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            rc = run_file(path);
            *count += rc == 0;
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    size_t count = 0;
    int rc = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR|FILE...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc && rc == 0; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "fuzz-replay: %s: %s\n", argv[i], strerror(errno));
            rc = 1;
        } else if (S_ISDIR(st.st_mode)) {
            rc = run_dir(argv[i], &count);
        } else {
            rc = run_file(argv[i]);
            count += rc == 0;
        }
    }
    printf("%s: %zu inputs ran\n", argv[0], count);
    return rc;
}

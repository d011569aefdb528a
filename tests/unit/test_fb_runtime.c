/*
 * test_fb_runtime.c — unit tests of kcqrs's FlatBuffers runtime (ev_fb.h):
 * builder byte layouts derived by hand from the format, flatc as an oracle in
 * both directions (it reads what we build; we read and verify what it builds,
 * and both write the same bytes for the same object), vtable deduplication,
 * verifier rejections (truncation, bad offsets, alignment, sizes, depth,
 * table count, every single-bit flip), strict UTF-8 and builder misuse.
 *
 * flatc (flatbuffers-compiler) is required: without it the oracle tests fail.
 * Files go to a mkdtemp() directory removed by the group teardown.
 */
#include "ev_fb.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "kq_err.h"

/* ------------------------------------------------------------ test schema */

static const char SCHEMA[] = "namespace kqtest;\n"
                             "struct Pt { a: int; b: long; }\n"
                             "table Child { id: int; name: string; next: Child; }\n"
                             "table Other { v: long; }\n"
                             "union Any { Child, Other }\n"
                             "table Root {\n"
                             "  small: ubyte; shorty: short; medium: int; big: long;\n"
                             "  name: string; ints: [int]; names: [string]; kids: [Child];\n"
                             "  child: Child; pt: Pt; longs: [long]; pts: [Pt];\n"
                             "  any: Any; huge: ulong; flag: bool = true;\n"
                             "}\n"
                             "root_type Root;\n"
                             "file_identifier \"KQTS\";\n";

/* slots; the union takes two: any_type then any */
enum {
    R_SMALL,
    R_SHORTY,
    R_MEDIUM,
    R_BIG,
    R_NAME,
    R_INTS,
    R_NAMES,
    R_KIDS,
    R_CHILD,
    R_PT,
    R_LONGS,
    R_PTS,
    R_ANY_TYPE,
    R_ANY,
    R_HUGE,
    R_FLAG
};
enum { C_ID, C_NAME, C_NEXT };
enum { O_V };
enum { ANY_NONE, ANY_CHILD, ANY_OTHER };

#define IDENT "KQTS"
#define NAME "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80" /* héllo € U+1F600 */

static const int32_t INTS[4] = {1, -2, INT32_MAX, INT32_MIN};
static const int64_t LONGS[3] = {1, -1, INT64_MAX};
static const char *const NAMES[3] = {"a", "", "bc"};
#define BIG_VAL (-9000000000000000000LL)
#define U64_VAL 81985529216486895ULL /* 0x0123456789abcdef */

/*
 * The sample object as JSON for flatc. flatc 2.0.8's parser creates
 * sub-objects in JSON order (depth first) and then adds a table's fields by
 * size class (8, 4, 2, 1 bytes; offsets and structs count as 4), highest
 * slot first within a class; build_sample() makes the same calls in the same
 * order, so both must produce identical bytes. Structs come first in the
 * JSON because flatc aligns its scratch copy of a struct at parse time.
 */
static const char SAMPLE_JSON[] =
    "{\n"
    "  \"pt\": {\"a\": -5, \"b\": 1234567890123},\n"
    "  \"pts\": [{\"a\": 1, \"b\": 2}, {\"a\": 3, \"b\": 4}],\n"
    "  \"ints\": [1, -2, 2147483647, -2147483648],\n"
    "  \"small\": 200,\n"
    "  \"shorty\": -12345,\n"
    "  \"medium\": -2000000000,\n"
    "  \"big\": -9000000000000000000,\n"
    "  \"name\": \"" NAME "\",\n"
    "  \"names\": [\"a\", \"\", \"bc\"],\n"
    "  \"kids\": [{\"id\": 1, \"name\": \"k1\"}, {\"id\": 2, \"name\": \"k2\"}, {\"id\": 3}],\n"
    "  \"child\": {\"id\": 7, \"name\": \"c\", \"next\": {\"id\": 8, \"next\": {\"id\": 9}}},\n"
    "  \"longs\": [1, -1, 9223372036854775807],\n"
    "  \"any_type\": \"Other\",\n"
    "  \"any\": {\"v\": 42},\n"
    "  \"huge\": 81985529216486895,\n"
    "  \"flag\": false\n"
    "}\n";

static void put32(uint8_t *buf, uint32_t pos, uint32_t v)
{
    memcpy(buf + pos, &v, 4);
}

static void put16(uint8_t *buf, uint32_t pos, uint16_t v)
{
    memcpy(buf + pos, &v, 2);
}

static uint32_t vtable_of(const uint8_t *buf, uint32_t t)
{
    return (uint32_t)((int64_t)t - (int32_t)ev_fb_read_u32(buf + t));
}

static void pack_pt(uint8_t out[16], int32_t a, int64_t b)
{
    memcpy(out, &a, 4);
    memset(out + 4, 0, 4);
    memcpy(out + 8, &b, 8);
}

static ev_fb_ref build_child(ev_fb_builder *b, int32_t id, ev_fb_ref name, ev_fb_ref next)
{
    ev_fb_table_start(b);
    ev_fb_table_add_ref(b, C_NEXT, next);
    ev_fb_table_add_ref(b, C_NAME, name);
    ev_fb_add_i32(b, C_ID, id, 0);
    return ev_fb_table_end(b);
}

/* The sample, in flatc's order (see SAMPLE_JSON). Returns finish()'s code. */
static int build_sample(ev_fb_builder *b)
{
    uint8_t pt[16], pts[32];
    ev_fb_ref r_pts, r_ints, r_name, names[3], r_names, kids[3], r_kids, c9, c8, c7, r_longs, other,
        root;
    int i;

    pack_pt(pt, -5, 1234567890123LL);
    pack_pt(pts, 1, 2);
    pack_pt(pts + 16, 3, 4);
    r_pts = ev_fb_create_vector(b, pts, 2, 16, 8);
    r_ints = ev_fb_create_vector(b, INTS, 4, 4, 4);
    r_name = ev_fb_create_string(b, NAME, strlen(NAME));
    for (i = 0; i < 3; i++)
        names[i] = ev_fb_create_string(b, NAMES[i], strlen(NAMES[i]));
    r_names = ev_fb_create_ref_vector(b, names, 3);
    kids[0] = build_child(b, 1, ev_fb_create_string(b, "k1", 2), 0);
    kids[1] = build_child(b, 2, ev_fb_create_string(b, "k2", 2), 0);
    kids[2] = build_child(b, 3, 0, 0);
    r_kids = ev_fb_create_ref_vector(b, kids, 3);
    {
        ev_fb_ref c = ev_fb_create_string(b, "c", 1);
        c9 = build_child(b, 9, 0, 0);
        c8 = build_child(b, 8, 0, c9);
        c7 = build_child(b, 7, c, c8);
    }
    r_longs = ev_fb_create_vector(b, LONGS, 3, 8, 8);
    ev_fb_table_start(b);
    ev_fb_add_i64(b, O_V, 42, 0);
    other = ev_fb_table_end(b);

    ev_fb_table_start(b);
    ev_fb_add_u64(b, R_HUGE, U64_VAL, 0);
    ev_fb_add_i64(b, R_BIG, BIG_VAL, 0);
    ev_fb_table_add_ref(b, R_ANY, other);
    ev_fb_table_add_ref(b, R_PTS, r_pts);
    ev_fb_table_add_ref(b, R_LONGS, r_longs);
    ev_fb_table_add_struct(b, R_PT, pt, sizeof pt, 8);
    ev_fb_table_add_ref(b, R_CHILD, c7);
    ev_fb_table_add_ref(b, R_KIDS, r_kids);
    ev_fb_table_add_ref(b, R_NAMES, r_names);
    ev_fb_table_add_ref(b, R_INTS, r_ints);
    ev_fb_table_add_ref(b, R_NAME, r_name);
    ev_fb_add_i32(b, R_MEDIUM, -2000000000, 0);
    ev_fb_add_i16(b, R_SHORTY, -12345, 0);
    ev_fb_add_u8(b, R_FLAG, 0, 1);
    ev_fb_add_u8(b, R_ANY_TYPE, ANY_OTHER, ANY_NONE);
    ev_fb_add_u8(b, R_SMALL, 200, 0);
    root = ev_fb_table_end(b);
    return ev_fb_finish(b, root, IDENT);
}

/* Builds the sample; returns a malloc'd copy (caller frees) and its size. */
static uint8_t *sample_copy(size_t *len)
{
    ev_fb_builder b;
    const uint8_t *data;
    uint8_t *out;

    ev_fb_builder_init(&b);
    assert_int_equal(build_sample(&b), 0);
    data = ev_fb_builder_data(&b, len);
    assert_non_null(data);
    out = malloc(*len);
    assert_non_null(out);
    memcpy(out, data, *len);
    ev_fb_builder_free(&b);
    return out;
}

/* ------------------------------------------------- schema verifier, walker */

static int verify_child(ev_fb_verifier *v, uint32_t t)
{
    uint32_t next;
    int rc = KQ_ECORRUPT;

    if (ev_fb_verify_enter(v) != 0)
        return KQ_ECORRUPT;
    if (ev_fb_verify_field(v, t, C_ID, 4, 4) == 0 && ev_fb_verify_string(v, t, C_NAME) == 0 &&
        ev_fb_verify_table_field(v, t, C_NEXT, &next) == 0 &&
        (next == 0 || verify_child(v, next) == 0))
        rc = 0;
    ev_fb_verify_leave(v);
    return rc;
}

static int verify_other(ev_fb_verifier *v, uint32_t t)
{
    int rc;

    if (ev_fb_verify_enter(v) != 0)
        return KQ_ECORRUPT;
    rc = ev_fb_verify_field(v, t, O_V, 8, 8);
    ev_fb_verify_leave(v);
    return rc;
}

/* Everything walk_root() reads is checked here. */
static int verify_root_fields(ev_fb_verifier *v, uint32_t r)
{
    const uint8_t *buf = v->buf;
    uint32_t vp, n, i, t, slen;
    const char *s;

    if (ev_fb_verify_field(v, r, R_SMALL, 1, 1) || ev_fb_verify_field(v, r, R_SHORTY, 2, 2) ||
        ev_fb_verify_field(v, r, R_MEDIUM, 4, 4) || ev_fb_verify_field(v, r, R_BIG, 8, 8) ||
        ev_fb_verify_field(v, r, R_HUGE, 8, 8) || ev_fb_verify_field(v, r, R_FLAG, 1, 1) ||
        ev_fb_verify_field(v, r, R_ANY_TYPE, 1, 1) || ev_fb_verify_field(v, r, R_PT, 16, 8) ||
        ev_fb_verify_string(v, r, R_NAME))
        return KQ_ECORRUPT;
    s = ev_fb_string(buf, r, R_NAME, &slen);
    if (s && !ev_fb_utf8_valid(s, slen))
        return KQ_ECORRUPT;
    if (ev_fb_verify_vector(v, r, R_INTS, 4, 4, &vp, &n) ||
        ev_fb_verify_vector(v, r, R_LONGS, 8, 8, &vp, &n) ||
        ev_fb_verify_vector(v, r, R_PTS, 16, 8, &vp, &n))
        return KQ_ECORRUPT;
    if (ev_fb_verify_vector(v, r, R_NAMES, 4, 4, &vp, &n))
        return KQ_ECORRUPT;
    for (i = 0; i < n; i++)
        if (ev_fb_verify_string_at(v, vp + 4 * i))
            return KQ_ECORRUPT;
    if (ev_fb_verify_vector(v, r, R_KIDS, 4, 4, &vp, &n))
        return KQ_ECORRUPT;
    for (i = 0; i < n; i++)
        if (ev_fb_verify_table_at(v, vp + 4 * i, &t) || verify_child(v, t))
            return KQ_ECORRUPT;
    if (ev_fb_verify_table_field(v, r, R_CHILD, &t) || (t && verify_child(v, t)))
        return KQ_ECORRUPT;
    /* union: the value is verified (and read) only for known types */
    switch (ev_fb_get_u8(buf, r, R_ANY_TYPE, ANY_NONE)) {
    case ANY_CHILD:
        return ev_fb_verify_table_field(v, r, R_ANY, &t) || (t && verify_child(v, t));
    case ANY_OTHER:
        return ev_fb_verify_table_field(v, r, R_ANY, &t) || (t && verify_other(v, t));
    default:
        return 0;
    }
}

static int verify_root(ev_fb_verifier *v, uint32_t *root)
{
    int rc;

    if (ev_fb_verify_root(v, IDENT, root) != 0 || ev_fb_verify_enter(v) != 0)
        return KQ_ECORRUPT;
    rc = verify_root_fields(v, *root) ? KQ_ECORRUPT : 0;
    ev_fb_verify_leave(v);
    return rc;
}

/* Verify buf[0..len) with the given limits (0 = default); *vout if wanted. */
static int verify_buf(const uint8_t *buf, size_t len, unsigned max_depth, size_t max_tables,
                      ev_fb_verifier *vout)
{
    ev_fb_verifier v;
    uint32_t root;
    int rc;

    ev_fb_verifier_init(&v, buf, len);
    if (max_depth)
        v.max_depth = max_depth;
    if (max_tables)
        v.max_tables = max_tables;
    rc = verify_root(&v, &root);
    if (vout)
        *vout = v;
    return rc;
}

static uint64_t sum_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 0;
    size_t i;

    for (i = 0; i < n; i++)
        h = h * 31 + p[i];
    return h;
}

static uint64_t walk_child(const uint8_t *buf, uint32_t t)
{
    uint32_t n, next;
    const char *s = ev_fb_string(buf, t, C_NAME, &n);
    uint64_t h = (uint32_t)ev_fb_get_i32(buf, t, C_ID, 0);

    if (s)
        h += sum_bytes((const uint8_t *)s, n + 1); /* with the NUL */
    next = ev_fb_table(buf, t, C_NEXT);
    return next ? h + walk_child(buf, next) : h;
}

/* Read every field verify_root() checked, touching every byte it covers. */
static uint64_t walk_root(const uint8_t *buf, uint32_t r)
{
    uint32_t n, vp, i, f, t;
    const char *s;
    uint64_t h = ev_fb_get_u8(buf, r, R_SMALL, 0);

    h += (uint16_t)ev_fb_get_i16(buf, r, R_SHORTY, 0);
    h += (uint32_t)ev_fb_get_i32(buf, r, R_MEDIUM, 0);
    h += (uint64_t)ev_fb_get_i64(buf, r, R_BIG, 0) + ev_fb_get_u64(buf, r, R_HUGE, 0);
    h += ev_fb_get_u8(buf, r, R_FLAG, 1);
    f = ev_fb_field(buf, r, R_PT);
    if (f)
        h += sum_bytes(buf + f, 16);
    s = ev_fb_string(buf, r, R_NAME, &n);
    if (s)
        h += sum_bytes((const uint8_t *)s, n + 1);
    vp = ev_fb_vector(buf, r, R_INTS, &n);
    h += sum_bytes(buf + vp, (size_t)n * 4);
    vp = ev_fb_vector(buf, r, R_LONGS, &n);
    h += sum_bytes(buf + vp, (size_t)n * 8);
    vp = ev_fb_vector(buf, r, R_PTS, &n);
    h += sum_bytes(buf + vp, (size_t)n * 16);
    vp = ev_fb_vector(buf, r, R_NAMES, &n);
    for (i = 0; i < n; i++) {
        uint32_t str = ev_fb_deref(buf, vp + 4 * i);
        h += sum_bytes(buf + str, 4 + (size_t)ev_fb_read_u32(buf + str) + 1);
    }
    vp = ev_fb_vector(buf, r, R_KIDS, &n);
    for (i = 0; i < n; i++)
        h += walk_child(buf, ev_fb_deref(buf, vp + 4 * i));
    t = ev_fb_table(buf, r, R_CHILD);
    if (t)
        h += walk_child(buf, t);
    t = ev_fb_table(buf, r, R_ANY);
    switch (ev_fb_get_u8(buf, r, R_ANY_TYPE, ANY_NONE)) {
    case ANY_CHILD:
        if (t)
            h += walk_child(buf, t);
        break;
    case ANY_OTHER:
        if (t)
            h += (uint64_t)ev_fb_get_i64(buf, t, O_V, 0);
        break;
    default:
        break;
    }
    return h;
}

static void check_child(const uint8_t *buf, uint32_t t, int32_t id, const char *name)
{
    uint32_t n;
    const char *s;

    assert_int_not_equal(t, 0);
    assert_int_equal(ev_fb_get_i32(buf, t, C_ID, 0), id);
    s = ev_fb_string(buf, t, C_NAME, &n);
    if (name == NULL) {
        assert_null(s);
    } else {
        assert_non_null(s);
        assert_int_equal(n, strlen(name));
        assert_memory_equal(s, name, n + 1);
    }
}

/* Every value of the sample, read with the inline readers. */
static void check_sample(const uint8_t *buf, size_t len)
{
    uint32_t r, n, vp, f, t, i;
    const char *s;
    uint8_t pt[16];

    assert_int_equal(verify_buf(buf, len, 0, 0, NULL), 0);
    assert_memory_equal(buf + 4, IDENT, 4);
    r = ev_fb_root(buf);
    assert_int_equal(ev_fb_get_u8(buf, r, R_SMALL, 0), 200);
    assert_int_equal(ev_fb_get_i16(buf, r, R_SHORTY, 0), -12345);
    assert_int_equal(ev_fb_get_i32(buf, r, R_MEDIUM, 0), -2000000000);
    assert_true(ev_fb_get_i64(buf, r, R_BIG, 0) == BIG_VAL);
    assert_true(ev_fb_get_u64(buf, r, R_HUGE, 0) == U64_VAL);
    assert_int_equal(ev_fb_get_u8(buf, r, R_FLAG, 1), 0);
    assert_int_not_equal(ev_fb_field(buf, r, R_FLAG), 0); /* written: differs from default */
    s = ev_fb_string(buf, r, R_NAME, &n);
    assert_non_null(s);
    assert_int_equal(n, strlen(NAME));
    assert_memory_equal(s, NAME, n + 1);

    vp = ev_fb_vector(buf, r, R_INTS, &n);
    assert_int_equal(n, 4);
    for (i = 0; i < 4; i++)
        assert_int_equal((int32_t)ev_fb_read_u32(buf + vp + 4 * i), INTS[i]);
    vp = ev_fb_vector(buf, r, R_LONGS, &n);
    assert_int_equal(n, 3);
    for (i = 0; i < 3; i++)
        assert_true((int64_t)ev_fb_read_u64(buf + vp + 8 * i) == LONGS[i]);
    vp = ev_fb_vector(buf, r, R_NAMES, &n);
    assert_int_equal(n, 3);
    for (i = 0; i < 3; i++) {
        uint32_t str = ev_fb_deref(buf, vp + 4 * i);
        assert_int_equal(ev_fb_read_u32(buf + str), strlen(NAMES[i]));
        assert_memory_equal(buf + str + 4, NAMES[i], strlen(NAMES[i]) + 1);
    }
    vp = ev_fb_vector(buf, r, R_KIDS, &n);
    assert_int_equal(n, 3);
    check_child(buf, ev_fb_deref(buf, vp), 1, "k1");
    check_child(buf, ev_fb_deref(buf, vp + 4), 2, "k2");
    check_child(buf, ev_fb_deref(buf, vp + 8), 3, NULL);

    t = ev_fb_table(buf, r, R_CHILD);
    check_child(buf, t, 7, "c");
    t = ev_fb_table(buf, t, C_NEXT);
    check_child(buf, t, 8, NULL);
    t = ev_fb_table(buf, t, C_NEXT);
    check_child(buf, t, 9, NULL);
    assert_int_equal(ev_fb_table(buf, t, C_NEXT), 0);

    f = ev_fb_field(buf, r, R_PT);
    assert_int_not_equal(f, 0);
    pack_pt(pt, -5, 1234567890123LL);
    assert_memory_equal(buf + f, pt, 16);
    vp = ev_fb_vector(buf, r, R_PTS, &n);
    assert_int_equal(n, 2);
    pack_pt(pt, 1, 2);
    assert_memory_equal(buf + vp, pt, 16);
    pack_pt(pt, 3, 4);
    assert_memory_equal(buf + vp + 16, pt, 16);

    assert_int_equal(ev_fb_get_u8(buf, r, R_ANY_TYPE, 0), ANY_OTHER);
    t = ev_fb_table(buf, r, R_ANY);
    assert_int_not_equal(t, 0);
    assert_true(ev_fb_get_i64(buf, t, O_V, 0) == 42);
}

/* --------------------------------------------------------------- flatc I/O */

static char g_dir[256];
static const char *const TMP_FILES[] = {"schema.fbs", "ours.bin", "ours.json",
                                        "data.json",  "data.bin", NULL};

static void tmp_path(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", g_dir, name);
}

static void write_file(const char *name, const void *data, size_t len)
{
    char path[512];
    FILE *f;

    tmp_path(path, sizeof path, name);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* Whole file, malloc'd (caller frees). */
static uint8_t *read_whole(const char *name, size_t *len)
{
    char path[512];
    FILE *f;
    long n;
    uint8_t *data;

    tmp_path(path, sizeof path, name);
    f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    data = malloc((size_t)n);
    assert_non_null(data);
    assert_int_equal(fread(data, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return data;
}

/* Run a shell command; its exit status (-1 if it did not exit). */
static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    int st;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    st = system(cmd);
    return (st != -1 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
}

static int group_setup(void **state)
{
    const char *tmp = getenv("TMPDIR");
    char path[512];
    FILE *f;

    snprintf(g_dir, sizeof g_dir, "%s/kcqrs-fbtest-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(g_dir) == NULL)
        return -1;
    tmp_path(path, sizeof path, "schema.fbs");
    f = fopen(path, "w");
    if (f == NULL)
        return -1;
    fputs(SCHEMA, f);
    return fclose(f) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    char path[512];
    int i;

    for (i = 0; TMP_FILES[i]; i++) {
        tmp_path(path, sizeof path, TMP_FILES[i]);
        unlink(path);
    }
    return rmdir(g_dir) == 0 ? 0 : -1;
}

static void require_flatc(void)
{
    if (run("flatc --version >/dev/null 2>&1") != 0)
        fail_msg("flatc not found: install flatbuffers-compiler (the test oracle)");
}

static void dump_diff(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t i, n = alen > blen ? alen : blen;

    fprintf(stderr, "pos  ours flatc\n");
    for (i = 0; i < n; i++)
        fprintf(stderr, "%4zu  %s%02x  %s%02x%s\n", i, i < alen ? "" : "-", i < alen ? a[i] : 0,
                i < blen ? "" : "-", i < blen ? b[i] : 0,
                (i < alen && i < blen && a[i] == b[i]) ? "" : "   <--");
}

static json_t *jget(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);

    if (v == NULL)
        fail_msg("flatc JSON lacks \"%s\"", key);
    return v;
}

static long long jint(json_t *o, const char *key)
{
    json_t *v = jget(o, key);

    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static void check_jstring(json_t *v, const char *want)
{
    assert_true(json_is_string(v));
    assert_int_equal(json_string_length(v), strlen(want));
    assert_memory_equal(json_string_value(v), want, strlen(want));
}

static void check_jchild(json_t *c, long long id, const char *name, int nkeys)
{
    assert_true(json_is_object(c));
    assert_int_equal(json_object_size(c), nkeys);
    assert_true(jint(c, "id") == id);
    if (name)
        check_jstring(jget(c, "name"), name);
}

/* flatc's JSON rendering of our sample must hold exactly the sample's values. */
static void check_sample_json(json_t *j)
{
    json_t *a, *c;
    size_t i;

    assert_true(json_is_object(j));
    assert_int_equal(json_object_size(j), 16);
    assert_true(jint(j, "small") == 200);
    assert_true(jint(j, "shorty") == -12345);
    assert_true(jint(j, "medium") == -2000000000);
    assert_true(jint(j, "big") == BIG_VAL);
    assert_true(jint(j, "huge") == (long long)U64_VAL);
    assert_true(json_is_false(jget(j, "flag")));
    check_jstring(jget(j, "name"), NAME);
    a = jget(j, "ints");
    assert_int_equal(json_array_size(a), 4);
    for (i = 0; i < 4; i++)
        assert_true(json_integer_value(json_array_get(a, i)) == INTS[i]);
    a = jget(j, "longs");
    assert_int_equal(json_array_size(a), 3);
    for (i = 0; i < 3; i++)
        assert_true(json_integer_value(json_array_get(a, i)) == LONGS[i]);
    a = jget(j, "names");
    assert_int_equal(json_array_size(a), 3);
    for (i = 0; i < 3; i++)
        check_jstring(json_array_get(a, i), NAMES[i]);
    a = jget(j, "kids");
    assert_int_equal(json_array_size(a), 3);
    check_jchild(json_array_get(a, 0), 1, "k1", 2);
    check_jchild(json_array_get(a, 1), 2, "k2", 2);
    check_jchild(json_array_get(a, 2), 3, NULL, 1);
    c = jget(j, "child");
    check_jchild(c, 7, "c", 3);
    c = jget(c, "next");
    check_jchild(c, 8, NULL, 2);
    check_jchild(jget(c, "next"), 9, NULL, 1);
    c = jget(j, "pt");
    assert_true(jint(c, "a") == -5 && jint(c, "b") == 1234567890123LL);
    a = jget(j, "pts");
    assert_int_equal(json_array_size(a), 2);
    assert_true(jint(json_array_get(a, 0), "a") == 1 && jint(json_array_get(a, 0), "b") == 2);
    assert_true(jint(json_array_get(a, 1), "a") == 3 && jint(json_array_get(a, 1), "b") == 4);
    check_jstring(jget(j, "any_type"), "Other");
    c = jget(j, "any");
    assert_int_equal(json_object_size(c), 1);
    assert_true(jint(c, "v") == 42);
}

/* ------------------------------------------------------------ exact bytes */

static void finish_and_compare(ev_fb_builder *b, ev_fb_ref root, const char *ident,
                               const uint8_t *want, size_t want_len)
{
    const uint8_t *data;
    size_t len;

    assert_int_equal(ev_fb_finish(b, root, ident), 0);
    data = ev_fb_builder_data(b, &len);
    assert_non_null(data);
    if (len != want_len || memcmp(data, want, len) != 0) {
        dump_diff(data, len, want, want_len);
        fail_msg("builder bytes differ from the expected layout");
    }
}

static void test_bytes_empty_table(void **state)
{
    static const uint8_t want[] = {0x08, 0, 0,    0,  /* root -> table at 8 */
                                   0x04, 0, 0x04, 0,  /* vtable: 4 bytes, table 4 bytes */
                                   0x04, 0, 0,    0}; /* soffset 4 -> vtable at 4 */
    static const uint8_t want_id[] = {0x0c, 0, 0,    0, 'T', 'E', 'S', 'T', /* root -> 12 */
                                      0x04, 0, 0x04, 0,                     /* vtable at 8 */
                                      0x04, 0, 0,    0};                    /* table at 12 */
    ev_fb_builder b;

    ev_fb_builder_init(&b);
    ev_fb_table_start(&b);
    finish_and_compare(&b, ev_fb_table_end(&b), NULL, want, sizeof want);

    /* with a file identifier: root | "TEST" | vtable | table */
    ev_fb_builder_reset(&b);
    ev_fb_table_start(&b);
    finish_and_compare(&b, ev_fb_table_end(&b), "TEST", want_id, sizeof want_id);
    ev_fb_builder_free(&b);
}

static void test_bytes_scalars_string(void **state)
{
    static const uint8_t want[40] = {
        0x10, 0,    0,    0,                  /*  0: root -> table at 16 */
        0,    0,                              /*  4: padding (buffer to minalign 4) */
        0x0a, 0,    0x10, 0,                  /*  6: vtable: 10 bytes, table 16 bytes */
        0x07, 0,    0x08, 0,    0x0c, 0,      /* 10: slot0 @7, slot1 @8, slot2 @12 */
        0x0a, 0,    0,    0,                  /* 16: soffset 10 -> vtable at 6 */
        0,    0,    0,                        /* 20: padding (soffset to 4) */
        0x07,                                 /* 23: slot0 u8 = 7 */
        0xfe, 0xff, 0xff, 0xff,               /* 24: slot1 i32 = -2 */
        0x04, 0,    0,    0,                  /* 28: slot2 uoffset -> 32 */
        0x02, 0,    0,    0,    'h',  'i', 0, /* 32: string "hi" + NUL */
        0,                                    /* 39: padding (string to 4) */
    };
    ev_fb_builder b;
    ev_fb_ref s;
    int32_t i32 = -2;
    uint8_t u8 = 7;

    ev_fb_builder_init(&b);
    s = ev_fb_create_string(&b, "hi!", 2); /* len bytes only */
    ev_fb_table_start(&b);
    ev_fb_table_add_ref(&b, 2, s);
    ev_fb_table_add_scalar(&b, 1, &i32, 4);
    ev_fb_table_add_scalar(&b, 0, &u8, 1);
    finish_and_compare(&b, ev_fb_table_end(&b), NULL, want, sizeof want);
    ev_fb_builder_free(&b);
}

static void test_bytes_vectors(void **state)
{
    static const uint8_t want_scalar[32] = {
        0x04, 0, 0, 0,             /*  0: root -> 4 */
        0x01, 0, 0, 0,             /*  4: count 1 */
        8,    7, 6, 5, 4, 3, 2, 1, /*  8: u64 element, 8-aligned */
        0,    0, 0, 0,             /* 16: padding (elements to 8) */
        0x03, 0, 0, 0,             /* 20: count 3 */
        1,    0, 2, 0, 3, 0,       /* 24: u16 elements */
        0,    0,                   /* 30: padding (elements to 4) */
    };
    static const uint8_t want_refs[32] = {
        0x04, 0, 0, 0,                 /*  0: root -> 4 */
        0x02, 0, 0, 0,                 /*  4: count 2 */
        0x10, 0, 0, 0,                 /*  8: -> 24 ("a") */
        0x04, 0, 0, 0,                 /* 12: -> 16 ("bc") */
        0x02, 0, 0, 0, 'b', 'c', 0, 0, /* 16 */
        0x01, 0, 0, 0, 'a', 0,   0, 0, /* 24 */
    };
    static const uint16_t u16s[3] = {1, 2, 3};
    const uint64_t u64 = 0x0102030405060708ull;
    ev_fb_builder b;
    ev_fb_ref refs[2];

    ev_fb_builder_init(&b);
    assert_int_not_equal(ev_fb_create_vector(&b, u16s, 3, 2, 2), 0);
    finish_and_compare(&b, ev_fb_create_vector(&b, &u64, 1, 8, 8), NULL, want_scalar,
                       sizeof want_scalar);
    ev_fb_builder_reset(&b);
    refs[0] = ev_fb_create_string(&b, "a", 1);
    refs[1] = ev_fb_create_string(&b, "bc", 2);
    finish_and_compare(&b, ev_fb_create_ref_vector(&b, refs, 2), NULL, want_refs, sizeof want_refs);
    ev_fb_builder_free(&b);
}

/* An 8-byte field makes the whole buffer 8-aligned: finish pads by minalign. */
static void test_bytes_minalign(void **state)
{
    static const uint8_t want[32] = {
        0x10, 0,    0,    0,                            /*  0: root -> 16 */
        0,    0,    0,    0,                            /*  4: padding to minalign 8 (not 4) */
        0x08, 0,    0x10, 0,    0x08, 0,    0x07, 0,    /*  8: vtable: slot0 @8, slot1 @7 */
        0x08, 0,    0,    0,                            /* 16: soffset -> 8 */
        0,    0,    0,                                  /* 20: padding */
        0x7f,                                           /* 23: slot1 u8 */
        0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, /* 24: slot0 i64, 8-aligned */
    };
    ev_fb_builder b;

    ev_fb_builder_init(&b);
    ev_fb_table_start(&b);
    ev_fb_add_u64(&b, 0, 0x1122334455667788ull, 0);
    ev_fb_add_u8(&b, 1, 0x7f, 0);
    finish_and_compare(&b, ev_fb_table_end(&b), NULL, want, sizeof want);
    ev_fb_builder_free(&b);
}

static ev_fb_ref two_ints(ev_fb_builder *b, int32_t x, int32_t y, int slot1_first)
{
    ev_fb_table_start(b);
    if (slot1_first)
        ev_fb_add_i32(b, 1, y, 0);
    ev_fb_add_i32(b, 0, x, 0);
    if (!slot1_first)
        ev_fb_add_i32(b, 1, y, 0);
    return ev_fb_table_end(b);
}

static void test_vtable_dedup(void **state)
{
    static const uint8_t want[64] = {
        0x0c, 0,    0,    0,                      /*  0: root -> 12 */
        0,    0,                                  /*  4: padding */
        0x06, 0,    0x08, 0,    0x04, 0,          /*  6: root's vtable */
        0x06, 0,    0,    0,                      /* 12: root table, vtable at 6 */
        0x04, 0,    0,    0,                      /* 16: slot0 -> vector at 20 */
        0x02, 0,    0,    0,                      /* 20: count 2 */
        0x1c, 0,    0,    0,    0x04, 0, 0,    0, /* 24: -> 52 (A), -> 32 (B) */
        0xf4, 0xff, 0xff, 0xff,                   /* 32: B, soffset -12: A's vtable at 44 */
        0x04, 0,    0,    0,    0x03, 0, 0,    0, /* 36: B slot1 = 4, slot0 = 3 */
        0x08, 0,    0x0c, 0,    0x08, 0, 0x04, 0, /* 44: the shared vtable */
        0x08, 0,    0,    0,                      /* 52: A, vtable at 44 */
        0x02, 0,    0,    0,    0x01, 0, 0,    0, /* 56: A slot1 = 2, slot0 = 1 */
    };
    ev_fb_builder b;
    ev_fb_ref t[2], vec;
    const uint8_t *buf;
    size_t len;
    uint32_t vp, n, ta, tb;
    ev_fb_verifier v;

    ev_fb_builder_init(&b);
    t[0] = two_ints(&b, 1, 2, 0);
    t[1] = two_ints(&b, 3, 4, 0);
    vec = ev_fb_create_ref_vector(&b, t, 2);
    ev_fb_table_start(&b);
    ev_fb_table_add_ref(&b, 0, vec);
    finish_and_compare(&b, ev_fb_table_end(&b), NULL, want, sizeof want);

    /* same vtable size and table size but different field offsets: no sharing */
    ev_fb_builder_reset(&b);
    t[0] = two_ints(&b, 1, 2, 0);
    t[1] = two_ints(&b, 3, 4, 1);
    vec = ev_fb_create_ref_vector(&b, t, 2);
    ev_fb_table_start(&b);
    ev_fb_table_add_ref(&b, 0, vec);
    assert_int_equal(ev_fb_finish(&b, ev_fb_table_end(&b), NULL), 0);
    buf = ev_fb_builder_data(&b, &len);
    ev_fb_verifier_init(&v, buf, len);
    assert_int_equal(ev_fb_verify_root(&v, NULL, &ta), 0);
    assert_int_equal(ev_fb_verify_vector(&v, ta, 0, 4, 4, &vp, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(ev_fb_verify_table_at(&v, vp, &ta), 0);
    assert_int_equal(ev_fb_verify_table_at(&v, vp + 4, &tb), 0);
    assert_int_not_equal(vtable_of(buf, ta), vtable_of(buf, tb));
    assert_int_equal(ev_fb_get_i32(buf, ta, 0, 0), 1);
    assert_int_equal(ev_fb_get_i32(buf, ta, 1, 0), 2);
    assert_int_equal(ev_fb_get_i32(buf, tb, 0, 0), 3);
    assert_int_equal(ev_fb_get_i32(buf, tb, 1, 0), 4);
    assert_int_equal(len, 72); /* 64 + an 8-byte vtable */
    ev_fb_builder_free(&b);
}

/* ------------------------------------------------------------ flatc oracle */

static void test_flatc_reads_ours(void **state)
{
    uint8_t *buf;
    size_t len;
    char out[512];
    json_error_t jerr;
    json_t *j;

    require_flatc();
    buf = sample_copy(&len);
    check_sample(buf, len);
    write_file("ours.bin", buf, len);
    assert_int_equal(run("cd '%s' && flatc --json --strict-json --raw-binary -o . schema.fbs "
                         "-- ours.bin",
                         g_dir),
                     0);
    tmp_path(out, sizeof out, "ours.json");
    j = json_load_file(out, 0, &jerr);
    if (j == NULL)
        fail_msg("flatc output is not JSON: %s (line %d)", jerr.text, jerr.line);
    check_sample_json(j);
    json_decref(j);
    free(buf);
}

static void test_ours_reads_flatc(void **state)
{
    uint8_t *ours, *theirs;
    size_t olen, tlen;

    require_flatc();
    write_file("data.json", SAMPLE_JSON, strlen(SAMPLE_JSON));
    assert_int_equal(run("cd '%s' && flatc -b -o . schema.fbs data.json", g_dir), 0);
    theirs = read_whole("data.bin", &tlen);
    check_sample(theirs, tlen); /* verifier accepts it, readers see the values */

    /* and for the same object in the same order the bytes are flatc's */
    ours = sample_copy(&olen);
    if (olen != tlen || memcmp(ours, theirs, olen) != 0) {
        dump_diff(ours, olen, theirs, tlen);
        fail_msg("our bytes differ from flatc's");
    }
    free(ours);
    free(theirs);
}

/* --------------------------------------------------------------- verifier */

/* Verify a modified copy of the sample; the first error's text if any. */
static const char *sample_error(const uint8_t *buf, size_t len, char *errstr, size_t errlen)
{
    ev_fb_verifier v;
    uint8_t *copy = malloc(len ? len : 1);
    int rc;

    assert_non_null(copy);
    memcpy(copy, buf, len);
    rc = verify_buf(copy, len, 0, 0, &v);
    free(copy);
    if (rc == 0)
        return NULL;
    ev_fb_verifier_error(&v, errstr, errlen);
    return errstr;
}

static void test_verify_sample_ok(void **state)
{
    uint8_t *buf;
    size_t len;
    ev_fb_verifier v;
    char err[128];

    buf = sample_copy(&len);
    assert_int_equal(verify_buf(buf, len, 0, 0, &v), 0);
    assert_null(v.err);
    assert_int_equal(v.depth, 0);
    assert_int_equal(v.tables, 8); /* root, 3 kids, 3 chained children, Other */
    assert_int_equal(ev_fb_verifier_error(&v, err, sizeof err), KQ_ECORRUPT);
    free(buf);
}

static void test_verify_truncated(void **state)
{
    uint8_t *buf;
    size_t len, cut;

    /* The first object built (the pts vector) ends exactly at the end of the
     * buffer, so every shorter prefix cuts an object. */
    buf = sample_copy(&len);
    for (cut = 0; cut < len; cut++) {
        uint8_t *p = malloc(cut ? cut : 1);

        assert_non_null(p);
        memcpy(p, buf, cut);
        if (verify_buf(p, cut, 0, 0, NULL) == 0)
            fail_msg("prefix of %zu of %zu bytes verified", cut, len);
        free(p);
    }
    free(buf);
}

static void test_verify_bad_offsets(void **state)
{
    uint8_t *buf;
    size_t len;
    uint32_t r, f;
    char err[128];

    buf = sample_copy(&len);
    r = ev_fb_root(buf);
    put32(buf, 0, (uint32_t)len);
    assert_string_equal(sample_error(buf, len, err, sizeof err),
                        "offset points outside the buffer at offset 0");
    put32(buf, 0, 0); /* pointing at itself */
    assert_string_equal(sample_error(buf, len, err, sizeof err),
                        "offset points outside the buffer at offset 0");
    put32(buf, 0, 0xffffffffu);
    assert_non_null(sample_error(buf, len, err, sizeof err));
    put32(buf, 0, r + 2);
    {
        char want[64];
        snprintf(want, sizeof want, "misaligned table at offset %u", r + 2);
        assert_string_equal(sample_error(buf, len, err, sizeof err), want);
    }
    put32(buf, 0, r);
    assert_null(sample_error(buf, len, err, sizeof err));

    /* the name's uoffset pointing at, then past, the end */
    f = ev_fb_field(buf, r, R_NAME);
    put32(buf, f, (uint32_t)len - f);
    assert_non_null(sample_error(buf, len, err, sizeof err));
    put32(buf, f, 0x80000000u);
    assert_non_null(sample_error(buf, len, err, sizeof err));
    put32(buf, f, 0xfffffffcu); /* would wrap to f - 4 in 32 bits */
    assert_non_null(sample_error(buf, len, err, sizeof err));

    /* wrong identifier, too short, too large */
    free(buf);
    buf = sample_copy(&len);
    buf[5] ^= 1;
    assert_string_equal(sample_error(buf, len, err, sizeof err),
                        "wrong file identifier at offset 4");
    {
        ev_fb_verifier v;
        uint32_t root;

        ev_fb_verifier_init(&v, buf, 3);
        assert_int_equal(ev_fb_verify_root(&v, NULL, &root), KQ_ECORRUPT);
        ev_fb_verifier_init(&v, buf, (size_t)EV_FB_MAX_SIZE + 1); /* never read */
        assert_int_equal(ev_fb_verify_root(&v, NULL, &root), KQ_ECORRUPT);
        assert_string_equal(v.err, "buffer too large");
    }
    free(buf);
}

/* An empty table at 8 (vtable at 4) in a 12-byte buffer; patch, verify. */
static const char *empty_table_error(uint32_t soff, uint16_t vsize, uint16_t tsize, char *err,
                                     size_t errlen)
{
    uint8_t buf[12] = {0x08, 0, 0, 0};
    ev_fb_verifier v;
    uint32_t root;

    put16(buf, 4, vsize);
    put16(buf, 6, tsize);
    put32(buf, 8, soff);
    ev_fb_verifier_init(&v, buf, sizeof buf);
    if (ev_fb_verify_root(&v, NULL, &root) == 0) {
        assert_int_equal(root, 8);
        return NULL;
    }
    ev_fb_verifier_error(&v, err, errlen);
    return err;
}

static void test_verify_table_headers(void **state)
{
    /* table at 10 in a 16-byte buffer, otherwise valid (vtable at 6) */
    static const uint8_t mis[16] = {0x0a, 0, 0, 0, 0, 0, 0x04, 0, 0x04, 0, 0x04, 0, 0, 0, 0, 0};
    static const uint8_t ok[16] = {0x08, 0, 0, 0, 0x04, 0, 0x04, 0, 0x04, 0, 0, 0, 0, 0, 0, 0};
    ev_fb_verifier v;
    uint32_t root;
    char err[128];

    ev_fb_verifier_init(&v, ok, sizeof ok);
    assert_int_equal(ev_fb_verify_root(&v, NULL, &root), 0);
    ev_fb_verifier_init(&v, mis, sizeof mis);
    assert_int_equal(ev_fb_verify_root(&v, NULL, &root), KQ_ECORRUPT);
    assert_int_equal(root, 0);
    assert_int_equal(ev_fb_verifier_error(&v, err, sizeof err), KQ_ECORRUPT);
    assert_string_equal(err, "misaligned table at offset 10");

    assert_null(empty_table_error(4, 4, 4, err, sizeof err));
    /* vtable before the buffer, after it, straddling its end, misaligned */
    assert_string_equal(empty_table_error(12, 4, 4, err, sizeof err),
                        "vtable out of bounds at offset 8");
    assert_string_equal(empty_table_error(0x7fffffffu, 4, 4, err, sizeof err),
                        "vtable out of bounds at offset 8");
    assert_string_equal(empty_table_error(0x80000000u, 4, 4, err, sizeof err),
                        "vtable out of bounds at offset 8");
    assert_string_equal(empty_table_error((uint32_t)-2, 4, 4, err, sizeof err),
                        "vtable out of bounds at offset 8");
    assert_string_equal(empty_table_error(3, 4, 4, err, sizeof err),
                        "misaligned vtable at offset 5");
    /* vtable sizes: odd, too small, past the end */
    assert_string_equal(empty_table_error(4, 5, 4, err, sizeof err), "bad vtable size at offset 4");
    assert_string_equal(empty_table_error(4, 2, 4, err, sizeof err), "bad vtable size at offset 4");
    assert_string_equal(empty_table_error(4, 10, 4, err, sizeof err),
                        "vtable out of bounds at offset 4");
    assert_null(empty_table_error(4, 8, 4, err, sizeof err)); /* ends exactly at the end */
    /* table inline sizes: too small, past the end */
    assert_string_equal(empty_table_error(4, 4, 2, err, sizeof err), "bad table size at offset 8");
    assert_string_equal(empty_table_error(4, 4, 6, err, sizeof err),
                        "table out of bounds at offset 8");
}

static void test_verify_fields(void **state)
{
    ev_fb_builder b;
    uint8_t buf[64];
    const uint8_t *data;
    size_t len;
    uint32_t root, vt;
    ev_fb_verifier v;

    /* table { slot0: i32, slot2: i64 } */
    ev_fb_builder_init(&b);
    ev_fb_table_start(&b);
    ev_fb_add_i64(&b, 2, 5, 0);
    ev_fb_add_i32(&b, 0, 7, 0);
    assert_int_equal(ev_fb_finish(&b, ev_fb_table_end(&b), NULL), 0);
    data = ev_fb_builder_data(&b, &len);
    assert_true(len <= sizeof buf);
    memcpy(buf, data, len);
    ev_fb_builder_free(&b);

    ev_fb_verifier_init(&v, buf, len);
    assert_int_equal(ev_fb_verify_root(&v, NULL, &root), 0);
    assert_int_equal(ev_fb_verify_field(&v, root, 0, 4, 4), 0);
    assert_int_equal(ev_fb_verify_field(&v, root, 2, 8, 8), 0);
    assert_int_equal(ev_fb_verify_field(&v, root, 1, 2, 2), 0);   /* absent */
    assert_int_equal(ev_fb_verify_field(&v, root, 200, 8, 8), 0); /* beyond the vtable */
    assert_int_equal(ev_fb_verify_required(&v, root, 0), 0);
    assert_int_equal(ev_fb_verify_required(&v, root, 1), KQ_ECORRUPT);
    assert_string_equal(v.err, "required field missing");
    assert_int_equal(v.err_pos, root);
    /* reading a field as wider than the table holds */
    ev_fb_verifier_init(&v, buf, len);
    assert_int_equal(ev_fb_verify_field(&v, root, 0, 16, 4), KQ_ECORRUPT);
    assert_string_equal(v.err, "field outside table");

    /* memory: soffset | i32 | i64; the table is 8-aligned */
    vt = vtable_of(buf, root);
    assert_int_equal(root % 8, 0);
    assert_int_equal(ev_fb_read_u16(buf + vt + 4), 4);
    assert_int_equal(ev_fb_read_u16(buf + vt + 8), 8);
    put16(buf, vt + 4, 6); /* misaligned for an i32 */
    ev_fb_verifier_init(&v, buf, len);
    assert_int_equal(ev_fb_verify_field(&v, root, 0, 4, 4), KQ_ECORRUPT);
    assert_string_equal(v.err, "misaligned field");
    assert_int_equal(v.err_pos, root + 6);
    ev_fb_verifier_init(&v, buf, len);
    assert_int_equal(ev_fb_verify_field(&v, root, 0, 2, 2), 0); /* fine as an i16 */
    put16(buf, vt + 8, 12); /* the i64 at 12: misaligned, 12 + 8 past 16 */
    ev_fb_verifier_init(&v, buf, len);
    assert_int_equal(ev_fb_verify_field(&v, root, 2, 8, 8), KQ_ECORRUPT);
    assert_string_equal(v.err, "field outside table");
    put16(buf, vt + 8, 8);
    put16(buf, vt + 4, 16); /* = table size: outside */
    ev_fb_verifier_init(&v, buf, len);
    assert_int_equal(ev_fb_verify_field(&v, root, 0, 4, 4), KQ_ECORRUPT);
    assert_string_equal(v.err, "field outside table");
    put16(buf, vt + 4, 2); /* overlaps the soffset */
    ev_fb_verifier_init(&v, buf, len);
    assert_int_equal(ev_fb_verify_field(&v, root, 0, 2, 2), KQ_ECORRUPT);
    /* the i32 7 read as a string offset: lands on a misaligned position */
    put16(buf, vt + 4, 4);
    ev_fb_verifier_init(&v, buf, len);
    assert_int_equal(ev_fb_verify_string(&v, root, 0), KQ_ECORRUPT);
    assert_string_equal(v.err, "misaligned string");
}

static void test_verify_strings(void **state)
{
    /* the 40-byte buffer of test_bytes_scalars_string: "hi" at 32, NUL at 38 */
    ev_fb_builder b;
    const uint8_t *data;
    uint8_t buf[40];
    size_t len;
    ev_fb_verifier v;
    uint32_t root;
    int32_t i32 = -2;
    char err[128];
    struct {
        uint32_t len;
        int ok;
    } cases[] = {{2, 1}, {3, 1}, {4, 0}, {0xffffffffu, 0}, {0xfffffffbu, 0}};
    size_t i;

    ev_fb_builder_init(&b);
    {
        ev_fb_ref s = ev_fb_create_string(&b, "hi", 2);
        ev_fb_table_start(&b);
        ev_fb_table_add_ref(&b, 2, s);
        ev_fb_table_add_scalar(&b, 1, &i32, 4);
        ev_fb_add_u8(&b, 0, 7, 0);
    }
    assert_int_equal(ev_fb_finish(&b, ev_fb_table_end(&b), NULL), 0);
    data = ev_fb_builder_data(&b, &len);
    assert_int_equal(len, sizeof buf);
    memcpy(buf, data, len);
    ev_fb_builder_free(&b);

    /* length: 3 still leaves room for a NUL (the padding byte), 4 does not;
     * huge lengths must not wrap around */
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        put32(buf, 32, cases[i].len);
        ev_fb_verifier_init(&v, buf, len);
        assert_int_equal(ev_fb_verify_root(&v, NULL, &root), 0);
        assert_int_equal(ev_fb_verify_string(&v, root, 2), cases[i].ok ? 0 : KQ_ECORRUPT);
        if (!cases[i].ok) {
            ev_fb_verifier_error(&v, err, sizeof err);
            assert_string_equal(err, "string length past end at offset 32");
        }
    }
    put32(buf, 32, 2);
    buf[38] = 'x';
    ev_fb_verifier_init(&v, buf, len);
    assert_int_equal(ev_fb_verify_root(&v, NULL, &root), 0);
    assert_int_equal(ev_fb_verify_string(&v, root, 2), KQ_ECORRUPT);
    ev_fb_verifier_error(&v, err, sizeof err);
    assert_string_equal(err, "string not NUL-terminated at offset 32");
    /* a scalar field read as a string: offset -2 points outside */
    assert_int_equal(ev_fb_verify_string(&v, root, 1), KQ_ECORRUPT);
    /* string with its header straddling the end */
    buf[38] = 0;
    put32(buf, 28, 10); /* -> 38 */
    ev_fb_verifier_init(&v, buf, len);
    assert_int_equal(ev_fb_verify_root(&v, NULL, &root), 0);
    assert_int_equal(ev_fb_verify_string(&v, root, 2), KQ_ECORRUPT);
}

static void test_verify_vector_counts(void **state)
{
    uint8_t *buf;
    size_t len;
    uint32_t r, vp, n;
    char err[128];
    /* counts whose byte size wraps to 0 or small values in 32-bit arithmetic */
    static const struct {
        unsigned slot;
        uint32_t count;
    } cases[] = {
        {R_LONGS, 0xffffffffu}, {R_LONGS, 0x20000000u}, {R_LONGS, 0x20000001u},
        {R_INTS, 0x40000000u},  {R_INTS, 0xffffffffu},  {R_PTS, 0x10000000u},
        {R_NAMES, 0x40000001u}, {R_KIDS, 0xffffffffu},
    };
    size_t i;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf = sample_copy(&len);
        r = ev_fb_root(buf);
        vp = ev_fb_vector(buf, r, cases[i].slot, &n);
        put32(buf, vp - 4, cases[i].count);
        if (sample_error(buf, len, err, sizeof err) == NULL)
            fail_msg("slot %u with count 0x%x verified", cases[i].slot, cases[i].count);
        free(buf);
    }
    /* the exact message, and misaligned elements */
    buf = sample_copy(&len);
    r = ev_fb_root(buf);
    vp = ev_fb_vector(buf, r, R_LONGS, &n);
    put32(buf, vp - 4, 0x20000000u);
    snprintf(err, sizeof err, "vector length past end at offset %u", vp - 4);
    {
        char got[128];
        assert_string_equal(sample_error(buf, len, got, sizeof got), err);
    }
    put32(buf, vp - 4, 3);
    {
        ev_fb_verifier v;
        uint32_t p;

        ev_fb_verifier_init(&v, buf, len);
        assert_int_equal(ev_fb_verify_vector(&v, r, R_LONGS, 8, 8, &p, &n), 0);
        assert_int_equal(p, vp);
        assert_int_equal(n, 3);
        assert_int_equal(vp % 8, 0);
        assert_int_equal(ev_fb_verify_vector(&v, r, R_LONGS, 8, 16, &p, &n) == 0, vp % 16 == 0);
        /* element size too large to multiply safely */
        assert_int_equal(ev_fb_verify_vector(&v, r, R_LONGS, (size_t)1 << 40, 8, &p, &n),
                         KQ_ECORRUPT);
    }
    free(buf);
}

/* Elements must be aligned to their own alignment; the count only to 4. */
static void test_verify_vector_alignment(void **state)
{
    ev_fb_builder b;
    const uint8_t *buf;
    size_t len;
    uint64_t x = 5;
    ev_fb_ref vec, empty;
    ev_fb_verifier v;
    uint32_t root, vp, n;

    /* u64 vectors built with (wrong) alignment 4 land 4 mod 8 here */
    ev_fb_builder_init(&b);
    vec = ev_fb_create_vector(&b, &x, 1, 8, 4);
    ev_fb_create_string(&b, "7 bytes", 7);
    empty = ev_fb_create_vector(&b, &x, 0, 8, 4);
    ev_fb_table_start(&b);
    ev_fb_table_add_ref(&b, 0, vec);
    ev_fb_add_u32(&b, 1, 1, 0);
    ev_fb_table_add_ref(&b, 2, empty);
    assert_int_equal(ev_fb_finish(&b, ev_fb_table_end(&b), NULL), 0);
    buf = ev_fb_builder_data(&b, &len);
    root = ev_fb_root(buf);
    vp = ev_fb_vector(buf, root, 0, &n);
    assert_int_equal(vp % 8, 4);
    assert_int_equal(ev_fb_vector(buf, root, 2, &n) % 8, 4);

    ev_fb_verifier_init(&v, buf, len);
    assert_int_equal(ev_fb_verify_root(&v, NULL, &root), 0);
    assert_int_equal(ev_fb_verify_vector(&v, root, 0, 8, 4, &vp, &n), 0);
    assert_int_equal(ev_fb_verify_vector(&v, root, 0, 8, 8, &vp, &n), KQ_ECORRUPT);
    assert_string_equal(v.err, "misaligned vector elements");
    assert_int_equal(v.err_pos, ev_fb_vector(buf, root, 0, &n) - 4);
    assert_int_equal(vp, 0);
    /* an empty vector has no elements to misalign */
    assert_int_equal(ev_fb_verify_vector(&v, root, 2, 8, 8, &vp, &n), 0);
    assert_int_equal(n, 0);
    ev_fb_builder_free(&b);
}

/* Root { child: Child { next: Child { ... } } } with `chain` children. */
static uint8_t *build_chain(unsigned chain, size_t *len)
{
    ev_fb_builder b;
    ev_fb_ref t = 0;
    const uint8_t *data;
    uint8_t *out;
    unsigned i;

    ev_fb_builder_init(&b);
    for (i = chain; i > 0; i--)
        t = build_child(&b, (int32_t)i, 0, t);
    ev_fb_table_start(&b);
    ev_fb_table_add_ref(&b, R_CHILD, t);
    assert_int_equal(ev_fb_finish(&b, ev_fb_table_end(&b), IDENT), 0);
    data = ev_fb_builder_data(&b, len);
    out = malloc(*len);
    assert_non_null(out);
    memcpy(out, data, *len);
    ev_fb_builder_free(&b);
    return out;
}

static void test_verify_depth(void **state)
{
    size_t len;
    uint8_t *buf = build_chain(100, &len);
    ev_fb_verifier v;
    char err[128];

    /* the root is depth 1, the 100th child depth 101 */
    assert_int_equal(verify_buf(buf, len, 0, 0, &v), KQ_ECORRUPT); /* default 64 */
    ev_fb_verifier_error(&v, err, sizeof err);
    assert_string_equal(err, "tables nested too deep at offset 0");
    assert_int_equal(verify_buf(buf, len, 100, 0, &v), KQ_ECORRUPT);
    assert_int_equal(verify_buf(buf, len, 101, 0, &v), 0);
    assert_int_equal(v.depth, 0);
    assert_int_equal(v.tables, 101);
    free(buf);
}

static void test_verify_max_tables(void **state)
{
    uint8_t *buf;
    size_t len;
    ev_fb_verifier v;

    buf = sample_copy(&len);
    assert_int_equal(verify_buf(buf, len, 0, 8, &v), 0);
    assert_int_equal(verify_buf(buf, len, 0, 7, &v), KQ_ECORRUPT);
    assert_string_equal(v.err, "too many tables");
    assert_int_equal(verify_buf(buf, len, 0, 1, &v), KQ_ECORRUPT);
    free(buf);
}

static void test_verify_bit_flips(void **state)
{
    uint8_t *buf, *m;
    size_t len, i;
    unsigned bit;
    uint32_t r0, vt0;
    ev_fb_verifier v;
    volatile uint64_t sink = 0;
    size_t rejected = 0, must_reject = 0;

    buf = sample_copy(&len);
    r0 = ev_fb_root(buf);
    vt0 = vtable_of(buf, r0);
    for (i = 0; i < len; i++) {
        for (bit = 0; bit < 8; bit++) {
            int rc, expect_reject = 0;

            /* an exact-size copy, so that ASan sees any read past the end */
            m = malloc(len);
            assert_non_null(m);
            memcpy(m, buf, len);
            m[i] ^= (uint8_t)(1u << bit);
            rc = verify_buf(m, len, 0, 0, &v);
            if (rc == 0) {
                uint32_t root;

                ev_fb_verifier_init(&v, m, len);
                assert_int_equal(ev_fb_verify_root(&v, IDENT, &root), 0);
                sink += walk_root(m, root); /* must stay inside m */
            } else {
                rejected++;
            }
            /* header fields whose new value is plainly invalid */
            if (i < 4) {
                uint32_t r = ev_fb_read_u32(m);
                expect_reject = (r & 3) || r >= len;
            } else if (i >= 4 && i < 8) {
                expect_reject = 1; /* file identifier */
            } else if (i >= r0 && i < r0 + 4) {
                int64_t vt = (int64_t)r0 - (int32_t)ev_fb_read_u32(m + r0);
                expect_reject = vt < 0 || vt + 4 > (int64_t)len || (vt & 1);
            } else if (i >= vt0 && i < vt0 + 2) {
                uint16_t vs = ev_fb_read_u16(m + vt0);
                expect_reject = vs < 4 || (vs & 1) || vt0 + vs > len;
            } else if (i >= vt0 + 2 && i < vt0 + 4) {
                uint16_t ts = ev_fb_read_u16(m + vt0 + 2);
                expect_reject = ts < 4 || r0 + ts > len;
            }
            if (expect_reject) {
                must_reject++;
                if (rc == 0)
                    fail_msg("flip of bit %u of byte %zu verified", bit, i);
            }
            free(m);
        }
    }
    /* most header flips are plainly invalid: the checks above did run */
    fprintf(stderr, "bit flips: %zu of %zu rejected, %zu of them plainly invalid headers\n",
            rejected, len * 8, must_reject);
    assert_true(must_reject >= 80);
    assert_true(rejected >= must_reject);
    free(buf);
    (void)sink;
}

/* ------------------------------------------------------------------- UTF-8 */

static void test_utf8(void **state)
{
    static const struct {
        const char *s;
        size_t len;
        int ok;
    } cases[] = {
        {"", 0, 1},
        {"plain ascii, longer than eight bytes", 36, 1},
        {"a\0b", 3, 1},             /* NUL is a character */
        {"\xc3\xa9", 2, 1},         /* U+00E9 */
        {"\xc2\x80", 2, 1},         /* U+0080, smallest 2-byte */
        {"\xdf\xbf", 2, 1},         /* U+07FF */
        {"\xe0\xa0\x80", 3, 1},     /* U+0800, smallest 3-byte */
        {"\xe2\x82\xac", 3, 1},     /* U+20AC */
        {"\xed\x9f\xbf", 3, 1},     /* U+D7FF, below surrogates */
        {"\xee\x80\x80", 3, 1},     /* U+E000, above surrogates */
        {"\xef\xbf\xbf", 3, 1},     /* U+FFFF */
        {"\xf0\x90\x80\x80", 4, 1}, /* U+10000, smallest 4-byte */
        {"\xf0\x9f\x98\x80", 4, 1}, /* U+1F600 */
        {"\xf4\x8f\xbf\xbf", 4, 1}, /* U+10FFFF, the largest */
        {"12345678\xc3\xa9"
         "12345678\xf0\x9f\x98\x80",
         22, 1},
        {"\xc0\x80", 2, 0},                 /* overlong NUL */
        {"\xc1\xbf", 2, 0},                 /* overlong U+007F */
        {"\xe0\x80\x80", 3, 0},             /* overlong */
        {"\xe0\x9f\xbf", 3, 0},             /* overlong U+07FF */
        {"\xf0\x80\x80\x80", 4, 0},         /* overlong */
        {"\xf0\x8f\xbf\xbf", 4, 0},         /* overlong U+FFFF */
        {"\xed\xa0\x80", 3, 0},             /* U+D800 */
        {"\xed\xbf\xbf", 3, 0},             /* U+DFFF */
        {"\xed\xa0\xbd\xed\xb8\x80", 6, 0}, /* CESU-8 surrogate pair */
        {"\xf4\x90\x80\x80", 4, 0},         /* U+110000 */
        {"\xf5\x80\x80\x80", 4, 0},
        {"\xf8\x88\x80\x80\x80", 5, 0}, /* 5-byte form */
        {"\xfe", 1, 0},
        {"\xff", 1, 0},
        {"\x80", 1, 0}, /* lone continuation */
        {"a\xbf", 2, 0},
        {"\xc3", 1, 0}, /* truncated */
        {"\xe2\x82", 2, 0},
        {"\xf0\x9f\x98", 3, 0},
        {"\xc3\xa9", 1, 0}, /* len cuts the sequence */
        {"\xe2\x82\xac", 2, 0},
        {"\xf0\x9f\x98\x80", 3, 0},
        {"12345678\xe2\x82\xac", 10, 0},
        {"\xc3"
         "A",
         2, 0}, /* bad continuation */
        {"\xe2\x28\xa1", 3, 0},
        {"\xe2\x82\x28", 3, 0},
        {"\xf0\x9f\x28\x80", 4, 0},
        {"\xf0\x9f\x98\x28", 4, 0},
        {"1234567\xc3", 8, 0}, /* truncated after ASCII */
        {"12345678\xe2\x82", 10, 0},
        {"12345678123456\xed\xa0\x80", 17, 0},
    };
    size_t i;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (ev_fb_utf8_valid(cases[i].s, cases[i].len) != cases[i].ok)
            fail_msg("utf8 case %zu: expected %d", i, cases[i].ok);
    assert_int_equal(ev_fb_utf8_valid(NULL, 0), 1);
}

/* --------------------------------------------------------- builder errors */

static void expect_err(ev_fb_builder *b, int want)
{
    size_t len = 1;

    assert_int_equal(b->err, want);
    assert_int_equal(ev_fb_finish(b, 4, NULL), want);
    assert_null(ev_fb_builder_data(b, &len));
    assert_int_equal(len, 0);
    ev_fb_builder_reset(b);
}

static void test_builder_misuse(void **state)
{
    ev_fb_builder b;
    ev_fb_ref s, t;
    uint32_t u32 = 1;
    static uint8_t big[0x10000];

    ev_fb_builder_init(&b);
    /* nested table */
    ev_fb_table_start(&b);
    ev_fb_table_start(&b);
    expect_err(&b, KQ_EINVAL);
    /* slot out of range, for each kind of field */
    ev_fb_table_start(&b);
    ev_fb_table_add_scalar(&b, EV_FB_MAX_SLOTS, &u32, 4);
    expect_err(&b, KQ_EINVAL);
    ev_fb_table_start(&b);
    ev_fb_table_add_struct(&b, EV_FB_MAX_SLOTS, &u32, 4, 4);
    expect_err(&b, KQ_EINVAL);
    s = ev_fb_create_string(&b, "x", 1);
    ev_fb_table_start(&b);
    ev_fb_table_add_ref(&b, EV_FB_MAX_SLOTS, s);
    expect_err(&b, KQ_EINVAL);
    /* the last valid slot works */
    ev_fb_table_start(&b);
    ev_fb_add_u32(&b, EV_FB_MAX_SLOTS - 1, 9, 0);
    t = ev_fb_table_end(&b);
    assert_int_equal(ev_fb_finish(&b, t, NULL), 0);
    {
        size_t len;
        const uint8_t *d = ev_fb_builder_data(&b, &len);
        ev_fb_verifier v;
        uint32_t root;

        ev_fb_verifier_init(&v, d, len);
        assert_int_equal(ev_fb_verify_root(&v, NULL, &root), 0);
        assert_int_equal(ev_fb_verify_field(&v, root, EV_FB_MAX_SLOTS - 1, 4, 4), 0);
        assert_int_equal(ev_fb_get_u32(d, root, EV_FB_MAX_SLOTS - 1, 0), 9);
    }
    ev_fb_builder_reset(&b);
    /* fields outside a table */
    ev_fb_add_u32(&b, 0, 1, 0);
    expect_err(&b, KQ_EINVAL);
    s = ev_fb_create_string(&b, "x", 1);
    ev_fb_table_add_ref(&b, 0, s);
    expect_err(&b, KQ_EINVAL);
    /* create_* inside a table */
    ev_fb_table_start(&b);
    ev_fb_create_string(&b, "x", 1);
    expect_err(&b, KQ_EINVAL);
    ev_fb_table_start(&b);
    ev_fb_create_vector(&b, &u32, 1, 4, 4);
    expect_err(&b, KQ_EINVAL);
    s = ev_fb_create_string(&b, "x", 1);
    ev_fb_table_start(&b);
    ev_fb_create_ref_vector(&b, &s, 1);
    expect_err(&b, KQ_EINVAL);
    /* end without start; finish inside a table; finish twice */
    ev_fb_table_end(&b);
    expect_err(&b, KQ_EINVAL);
    ev_fb_table_start(&b);
    assert_int_equal(ev_fb_finish(&b, 4, NULL), KQ_EINVAL);
    ev_fb_builder_reset(&b);
    ev_fb_table_start(&b);
    t = ev_fb_table_end(&b);
    assert_int_equal(ev_fb_finish(&b, t, NULL), 0);
    assert_int_equal(ev_fb_finish(&b, t, NULL), KQ_EINVAL);
    ev_fb_builder_reset(&b);
    /* bad root refs, short identifier */
    ev_fb_table_start(&b);
    t = ev_fb_table_end(&b);
    assert_int_equal(ev_fb_finish(&b, 0, NULL), KQ_EINVAL);
    ev_fb_builder_reset(&b);
    ev_fb_table_start(&b);
    t = ev_fb_table_end(&b);
    assert_int_equal(ev_fb_finish(&b, t + 100, NULL), KQ_EINVAL);
    ev_fb_builder_reset(&b);
    ev_fb_table_start(&b);
    t = ev_fb_table_end(&b);
    assert_int_equal(ev_fb_finish(&b, t, "AB"), KQ_EINVAL);
    ev_fb_builder_reset(&b);
    /* bad sizes and alignments */
    ev_fb_table_start(&b);
    ev_fb_table_add_scalar(&b, 0, &u32, 3);
    expect_err(&b, KQ_EINVAL);
    ev_fb_table_start(&b);
    ev_fb_table_add_scalar(&b, 0, NULL, 4);
    expect_err(&b, KQ_EINVAL);
    ev_fb_create_vector(&b, &u32, 1, 4, 3);
    expect_err(&b, KQ_EINVAL);
    ev_fb_create_vector(&b, &u32, 1, 4, 0);
    expect_err(&b, KQ_EINVAL);
    ev_fb_create_vector(&b, &u32, 1, 0, 4);
    expect_err(&b, KQ_EINVAL);
    ev_fb_create_vector(&b, NULL, 1, 4, 4);
    expect_err(&b, KQ_EINVAL);
    ev_fb_table_start(&b);
    ev_fb_table_add_struct(&b, 0, &u32, 4, 6);
    expect_err(&b, KQ_EINVAL);
    /* duplicate slot */
    ev_fb_table_start(&b);
    ev_fb_add_u32(&b, 3, 1, 0);
    ev_fb_add_u32(&b, 3, 2, 0);
    expect_err(&b, KQ_EINVAL);
    /* refs not built yet, or built inside the open table */
    ev_fb_table_start(&b);
    ev_fb_table_add_ref(&b, 0, 64);
    expect_err(&b, KQ_EINVAL);
    s = ev_fb_create_string(&b, "x", 1);
    ev_fb_create_ref_vector(&b, (ev_fb_ref[]){s, s + 4}, 2);
    expect_err(&b, KQ_EINVAL);
    ev_fb_create_ref_vector(&b, (ev_fb_ref[]){0}, 1);
    expect_err(&b, KQ_EINVAL);

    /* sizes past 2 GiB: detected before any allocation or copy */
    ev_fb_create_string(&b, "x", EV_FB_MAX_SIZE);
    expect_err(&b, KQ_ERANGE);
    ev_fb_create_vector(&b, &u32, 0x20000000u, 4, 4);
    expect_err(&b, KQ_ERANGE);
    ev_fb_create_vector(&b, &u32, SIZE_MAX / 2, 4, 4);
    expect_err(&b, KQ_ERANGE);
    /* a table's inline size must fit its u16 */
    ev_fb_table_start(&b);
    ev_fb_table_add_struct(&b, 0, big, 0xfffc, 4); /* + soffset = 0x10000 */
    ev_fb_table_end(&b);
    expect_err(&b, KQ_ERANGE);
    ev_fb_table_start(&b);
    ev_fb_table_add_struct(&b, 0, big, 0xfff8, 4); /* + soffset = 0xfffc: fits */
    t = ev_fb_table_end(&b);
    assert_int_equal(ev_fb_finish(&b, t, NULL), 0);
    {
        size_t len;
        const uint8_t *d = ev_fb_builder_data(&b, &len);
        ev_fb_verifier v;
        uint32_t root;

        ev_fb_verifier_init(&v, d, len);
        assert_int_equal(ev_fb_verify_root(&v, NULL, &root), 0);
        assert_int_equal(ev_fb_verify_field(&v, root, 0, 0xfff8, 4), 0);
    }
    ev_fb_builder_reset(&b);

    /* errors are sticky: the first one wins, later calls do nothing */
    ev_fb_add_u32(&b, 0, 1, 0);                       /* EINVAL */
    ev_fb_create_vector(&b, &u32, 0x20000000u, 4, 4); /* would be ERANGE */
    assert_int_equal(ev_fb_create_string(&b, "x", 1), 0);
    ev_fb_table_start(&b);
    assert_int_equal(ev_fb_table_end(&b), 0);
    assert_int_equal(b.size, 0);
    expect_err(&b, KQ_EINVAL);
    /* no data before finish */
    {
        size_t len = 1;
        assert_null(ev_fb_builder_data(&b, &len));
        assert_int_equal(len, 0);
    }
    ev_fb_builder_free(&b);
    ev_fb_builder_free(&b); /* safe twice */
}

static void test_builder_reset_reuse(void **state)
{
    ev_fb_builder fresh, b;
    const uint8_t *want, *got;
    size_t want_len, got_len, cap;
    int i;

    ev_fb_builder_init(&fresh);
    assert_int_equal(build_sample(&fresh), 0);
    want = ev_fb_builder_data(&fresh, &want_len);

    ev_fb_builder_init(&b);
    for (i = 0; i < 3; i++) {
        /* leave the builder dirty in a different way each time: finished with
         * other vtables, failed, or in the middle of a table */
        ev_fb_table_start(&b);
        ev_fb_add_i32(&b, 5, 1, 0);
        ev_fb_add_i64(&b, 1, 2, 0);
        if (i == 0)
            assert_int_equal(ev_fb_finish(&b, ev_fb_table_end(&b), NULL), 0);
        else if (i == 1)
            ev_fb_table_start(&b);
        ev_fb_builder_reset(&b);
        assert_int_equal(build_sample(&b), 0);
        got = ev_fb_builder_data(&b, &got_len);
        if (got_len != want_len || memcmp(got, want, got_len) != 0) {
            dump_diff(got, got_len, want, want_len);
            fail_msg("round %d: reused builder wrote different bytes", i);
        }
        ev_fb_builder_reset(&b);
    }
    /* memory is kept across reset */
    cap = b.cap;
    assert_true(cap >= want_len);
    assert_int_equal(build_sample(&b), 0);
    assert_int_equal(b.cap, cap);
    ev_fb_builder_free(&b);
    ev_fb_builder_free(&fresh);
}

static void test_builder_growth(void **state)
{
    enum { N = 5000 };
    ev_fb_builder b;
    ev_fb_ref *refs = malloc(N * sizeof *refs), vec;
    const uint8_t *buf;
    size_t len;
    ev_fb_verifier v;
    uint32_t root, vp, n, i;
    char s[64];

    assert_non_null(refs);
    ev_fb_builder_init(&b);
    for (i = 0; i < N; i++) {
        int k = snprintf(s, sizeof s, "item-%u-%.*s", i, (int)(i % 23), "abcdefghijklmnopqrstuvw");
        refs[i] = ev_fb_create_string(&b, s, (size_t)k);
    }
    vec = ev_fb_create_ref_vector(&b, refs, N);
    ev_fb_table_start(&b);
    ev_fb_table_add_ref(&b, 0, vec);
    assert_int_equal(ev_fb_finish(&b, ev_fb_table_end(&b), NULL), 0);
    buf = ev_fb_builder_data(&b, &len);
    assert_true(len > 60000);
    assert_true(b.cap >= len && (b.cap & (b.cap - 1)) == 0);

    ev_fb_verifier_init(&v, buf, len);
    assert_int_equal(ev_fb_verify_root(&v, NULL, &root), 0);
    assert_int_equal(ev_fb_verify_vector(&v, root, 0, 4, 4, &vp, &n), 0);
    assert_int_equal(n, N);
    for (i = 0; i < N; i++) {
        uint32_t at;
        int k = snprintf(s, sizeof s, "item-%u-%.*s", i, (int)(i % 23), "abcdefghijklmnopqrstuvw");

        assert_int_equal(ev_fb_verify_string_at(&v, vp + 4 * i), 0);
        at = ev_fb_deref(buf, vp + 4 * i);
        assert_int_equal(ev_fb_read_u32(buf + at), k);
        assert_memory_equal(buf + at + 4, s, (size_t)k + 1);
    }
    ev_fb_builder_free(&b);
    free(refs);
}

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_ASAN 1
#endif
#endif

#ifdef HAVE_ASAN
/* ASan maps terabytes of shadow memory, so RLIMIT_AS cannot apply; its own
 * allocation limit makes the large allocation below fail instead. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1:max_allocation_size_mb=512";
}
#endif

static void test_builder_enomem(void **state)
{
    pid_t pid;
    int st;

    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* child: 512 MiB of address space, then ask for a 1 GiB vector. The
         * source is 4 bytes: if the allocation wrongly succeeded, the copy
         * would crash, and the child would not exit 0. */
        struct rlimit rl = {512u << 20, 512u << 20};
        ev_fb_builder b;
        uint32_t one = 1;
        ev_fb_ref t;

#ifndef HAVE_ASAN
        if (setrlimit(RLIMIT_AS, &rl) != 0)
            _exit(10);
#else
        (void)rl;
#endif
        ev_fb_builder_init(&b);
        ev_fb_create_string(&b, "kept", 4);
        if (ev_fb_create_vector(&b, &one, 0x10000000u, 4, 4) != 0)
            _exit(11);
        if (ev_fb_finish(&b, 4, NULL) != KQ_ENOMEM || b.size != 12)
            _exit(12);
        ev_fb_builder_reset(&b); /* usable again */
        ev_fb_table_start(&b);
        t = ev_fb_table_end(&b);
        if (ev_fb_finish(&b, t, NULL) != 0)
            _exit(13);
        ev_fb_builder_free(&b);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytes_empty_table),
        cmocka_unit_test(test_bytes_scalars_string),
        cmocka_unit_test(test_bytes_vectors),
        cmocka_unit_test(test_bytes_minalign),
        cmocka_unit_test(test_vtable_dedup),
        cmocka_unit_test(test_flatc_reads_ours),
        cmocka_unit_test(test_ours_reads_flatc),
        cmocka_unit_test(test_verify_sample_ok),
        cmocka_unit_test(test_verify_truncated),
        cmocka_unit_test(test_verify_bad_offsets),
        cmocka_unit_test(test_verify_table_headers),
        cmocka_unit_test(test_verify_fields),
        cmocka_unit_test(test_verify_strings),
        cmocka_unit_test(test_verify_vector_counts),
        cmocka_unit_test(test_verify_vector_alignment),
        cmocka_unit_test(test_verify_depth),
        cmocka_unit_test(test_verify_max_tables),
        cmocka_unit_test(test_verify_bit_flips),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_builder_misuse),
        cmocka_unit_test(test_builder_reset_reuse),
        cmocka_unit_test(test_builder_growth),
        cmocka_unit_test(test_builder_enomem),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

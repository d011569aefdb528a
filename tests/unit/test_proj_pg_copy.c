/*
 * test_proj_pg_copy.c — the PostgreSQL target's wire values
 * (projections/proj_pg_copy.h) without a server: a COPY (FORMAT binary)
 * stream byte for byte (header, tuples of big-endian lengths and values, NULL
 * as -1), timestamps from the Unix epoch to PostgreSQL's 2000-01-01, and text
 * array literals (quoting, escaping, NULL elements).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "proj_pg_copy.h"

static void test_copy_stream(void **state)
{
    static const unsigned char want[] = {
        'P',  'G',  'C',  'O',  'P', 'Y', '\n', 0xff, '\r', '\n', 0, 0,
        0,    0,    0,    0,    0,   0,   0,                            /* header */
        0,    4,                                                        /* columns */
        0,    0,    0,    2,    'h', 'i',                               /* text */
        0,    0,    0,    4,    0,   0,   0x01, 0x02,                   /* int4 */
        0xff, 0xff, 0xff, 0xff,                                         /* NULL */
        0,    0,    0,    8,    0,   0,   0,    0,    0,    0,    0, 1, /* 2000-01-01 + 1 µs */
    };
    proj_pg_buf b = {0};
    proj_pg_row r;
    (void)state;

    proj_pg_copy_start(&b);
    r.n = 0;
    proj_pg_row_cstr(&r, "hi");
    proj_pg_row_i32(&r, 0x0102);
    proj_pg_row_str(&r, (ev_str){NULL, 0});
    proj_pg_row_ts(&r, PROJ_PG_EPOCH_US + 1);
    assert_int_equal(r.n, 4);
    assert_int_equal(proj_pg_copy_row(&b, &r), 0);
    assert_int_equal(b.len, sizeof want);
    assert_memory_equal(b.p, want, sizeof want);
    /* a column of one row taken into another (pipeline parameters) */
    {
        proj_pg_row p = {0};
        proj_pg_row_copy(&p, &r, 1);
        assert_int_equal(p.n, 1);
        assert_int_equal(p.len[0], 4);
        assert_ptr_equal(p.val[0], r.val[1]);
    }
    free(b.p);
}

static void test_array_literals(void **state)
{
    proj_pg_buf b = {0};
    (void)state;

    proj_pg_arr_start(&b);
    assert_int_equal(proj_pg_arr_end(&b), 0);
    assert_string_equal(b.p, "{}");
    proj_pg_arr_start(&b);
    assert_int_equal(proj_pg_arr_add(&b, "a\"b\\c", 5), 0);
    assert_int_equal(proj_pg_arr_str(&b, (ev_str){NULL, 0}), 0);
    assert_int_equal(proj_pg_arr_i64(&b, -42), 0);
    assert_int_equal(proj_pg_arr_str(&b, ev_str_c("x,y")), 0);
    assert_int_equal(proj_pg_arr_end(&b), 0);
    assert_string_equal(b.p, "{\"a\\\"b\\\\c\",NULL,\"-42\",\"x,y\"}");
    proj_pg_arr_start(&b); /* NULL first */
    assert_int_equal(proj_pg_arr_str(&b, (ev_str){NULL, 0}), 0);
    assert_int_equal(proj_pg_arr_end(&b), 0);
    assert_string_equal(b.p, "{NULL}");
    free(b.p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copy_stream),
        cmocka_unit_test(test_array_literals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

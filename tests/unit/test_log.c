/* test_log.c — kq_log's per-thread buffers: what stays buffered, and every
 * event that writes it out (WARN/ERROR, size, interval, thread exit, flush,
 * switching buffering off). stderr is redirected to a file the test reads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kq_log.h"

static char path[] = "/tmp/kq_test_log.XXXXXX";
static int saved_stderr = -1;

static int setup(void **state)
{
    int fd = mkstemp(path);

    (void)state;
    if (fd < 0)
        return -1;
    saved_stderr = dup(STDERR_FILENO);
    if (saved_stderr < 0 || dup2(fd, STDERR_FILENO) < 0)
        return -1;
    close(fd);
    kq_log_init("kcqrs-test", KQ_LOG_INFO, KQ_LOG_HUMAN);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kq_log_set_flush_ms(0);
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    unlink(path);
    return 0;
}

/* The file's text (caller frees). */
static char *slurp(void)
{
    FILE *f = fopen(path, "r");
    char *buf = calloc(1, 1 << 20);
    size_t n;

    assert_non_null(f);
    assert_non_null(buf);
    n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static long file_size(void)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (long)st.st_size;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_buffered_until_warn(void **state)
{
    char *s;
    long before;

    (void)state;
    kq_log_set_flush_ms(60000);
    before = file_size();
    kq_log_info("first %d", 1);
    kq_log_info("second");
    assert_int_equal(file_size(), before); /* still in the buffer */
    kq_log_warn("third");                  /* writes everything out, in order */
    s = slurp();
    assert_non_null(strstr(s, "INFO  kcqrs-test: first 1\n"));
    assert_true(strstr(s, "first 1") < strstr(s, "second"));
    assert_true(strstr(s, "second") < strstr(s, "WARN  kcqrs-test: third"));
    free(s);
    kq_log_info("fourth");
    before = file_size();
    kq_log_error("fifth");
    assert_true(file_size() > before);
    s = slurp();
    assert_true(strstr(s, "fourth") < strstr(s, "ERROR kcqrs-test: fifth"));
    free(s);
}

static void test_flush_and_size(void **state)
{
    char big[1000], *s;
    long before;

    (void)state;
    kq_log_set_flush_ms(60000);
    before = file_size();
    kq_log_info("sixth");
    assert_int_equal(file_size(), before);
    kq_log_flush();
    s = slurp();
    assert_non_null(strstr(s, "sixth\n"));
    free(s);

    /* more than one buffer's worth is written without any flush */
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    before = file_size();
    for (int i = 0; i < 2 * KQ_LOG_BUF_SIZE / (int)sizeof big; i++)
        kq_log_info("%s", big);
    assert_true(file_size() - before >= KQ_LOG_BUF_SIZE / 2);
    kq_log_flush();
    assert_true(file_size() - before >= 2 * KQ_LOG_BUF_SIZE - 2 * (long)sizeof big);
}

static void test_interval(void **state)
{
    char *s = NULL;

    (void)state;
    kq_log_set_flush_ms(50);
    kq_log_info("timed line");
    /* the flusher writes it within about one interval, without our help */
    for (int i = 0; i < 100; i++) {
        free(s);
        s = slurp();
        if (strstr(s, "timed line") != NULL)
            break;
        sleep_ms(20);
    }
    assert_non_null(strstr(s, "timed line\n"));
    free(s);
}

static void *thread_logs(void *arg)
{
    (void)arg;
    kq_log_info("from a thread that exits");
    return NULL;
}

static void test_thread_exit_and_off(void **state)
{
    pthread_t t;
    char *s;
    long before;

    (void)state;
    kq_log_set_flush_ms(60000);
    assert_int_equal(pthread_create(&t, NULL, thread_logs, NULL), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    s = slurp();
    assert_non_null(strstr(s, "from a thread that exits\n"));
    free(s);

    kq_log_info("buffered before off");
    kq_log_set_flush_ms(0); /* switching off writes out what waits */
    s = slurp();
    assert_non_null(strstr(s, "buffered before off\n"));
    free(s);
    before = file_size();
    kq_log_info("unbuffered");
    assert_true(file_size() > before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buffered_until_warn),
        cmocka_unit_test(test_flush_and_size),
        cmocka_unit_test(test_interval),
        cmocka_unit_test(test_thread_exit_and_off),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

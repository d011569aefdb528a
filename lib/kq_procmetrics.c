/* kq_procmetrics.c — see kq_procmetrics.h. */
#include "kq_procmetrics.h"
#include "kq_version.h"
#include "kq_err.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Read a small /proc file into buf (NUL-terminated). Length, or -1. */
static ssize_t read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t n = 0;

    if (fd < 0)
        return -1;
    while (n + 1 < cap) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    return (ssize_t)n;
}

int kq_procmetrics_parse_stat(const char *text, kq_proc_stat *out)
{
    const char *p = text ? strrchr(text, ')') : NULL;
    unsigned long long v[24]; /* fields 3..24 at v[3]..v[24 - 1]: index = field - 1 */
    int field;

    if (p == NULL)
        return KQ_EINVAL;
    p++;
    memset(v, 0, sizeof v);
    /* field 3 is the state letter; fields 4..24 are integers (some may be negative) */
    while (*p == ' ')
        p++;
    if (*p == '\0' || *p == ' ')
        return KQ_EINVAL;
    p++;
    for (field = 4; field <= 24; field++) {
        char *end;
        long long s;
        if (*p != ' ')
            return KQ_EINVAL;
        p++;
        errno = 0;
        s = strtoll(p, &end, 10);
        if (end == p || errno != 0)
            return KQ_EINVAL;
        v[field - 1] = (unsigned long long)s;
        p = end;
    }
    out->utime = v[13];
    out->stime = v[14];
    out->threads = (long long)v[19];
    out->starttime = v[21];
    out->vsize = v[22];
    out->rss = (long long)v[23];
    return 0;
}

static double start_time_s = -1;
static pthread_once_t start_once = PTHREAD_ONCE_INIT;

/* The boot time (/proc/stat btime) plus our start in ticks after boot. */
static void compute_start(void)
{
    char buf[8192], *b;
    kq_proc_stat st;
    long hz = sysconf(_SC_CLK_TCK);
    unsigned long long btime;

    if (hz <= 0 || read_small("/proc/self/stat", buf, sizeof buf) <= 0 ||
        kq_procmetrics_parse_stat(buf, &st) != 0)
        return;
    if (read_small("/proc/stat", buf, sizeof buf) <= 0 || (b = strstr(buf, "\nbtime ")) == NULL ||
        sscanf(b + 7, "%llu", &btime) != 1)
        return;
    start_time_s = (double)btime + (double)st.starttime / (double)hz;
}

static long count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    long n = 0;

    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

static void gauge(FILE *out, const char *name, const char *help, const char *type, double v)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n%s %.15g\n", name, help, name, type, name, v);
}

void kq_procmetrics_write(FILE *out)
{
    char buf[4096];
    kq_proc_stat st;
    long hz = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE), fds;
    struct rlimit rl;

    fprintf(out,
            "# HELP kcqrs_build_info The version and git commit this binary was built from.\n"
            "# TYPE kcqrs_build_info gauge\n"
            "kcqrs_build_info{version=\"%s\",commit=\"%s\"} 1\n",
            kq_version, kq_version_commit);
    if (hz > 0 && page > 0 && read_small("/proc/self/stat", buf, sizeof buf) > 0 &&
        kq_procmetrics_parse_stat(buf, &st) == 0) {
        gauge(out, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
              "counter", (double)(st.utime + st.stime) / (double)hz);
        gauge(out, "process_resident_memory_bytes", "Resident memory size in bytes.", "gauge",
              (double)st.rss * (double)page);
        gauge(out, "process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge",
              (double)st.vsize);
        gauge(out, "process_threads", "Number of OS threads in the process.", "gauge",
              (double)st.threads);
    }
    if ((fds = count_fds()) >= 0)
        gauge(out, "process_open_fds", "Number of open file descriptors.", "gauge", (double)fds);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        gauge(out, "process_max_fds", "Maximum number of open file descriptors.", "gauge",
              (double)rl.rlim_cur);
    pthread_once(&start_once, compute_start);
    if (start_time_s >= 0)
        gauge(out, "process_start_time_seconds",
              "Start time of the process since unix epoch in seconds.", "gauge", start_time_s);
}

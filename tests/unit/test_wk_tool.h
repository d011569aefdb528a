/*
 * test_wk_tool.h — start one of the worker's test tools (tests/tools:
 * kq_receiver, kq_smtp_sink) from a unit test: the tool built beside this
 * test (<build>/tests/tools/<name>, found from /proc/self/exe), started with
 * --port-file and --log in a temporary directory, stopped with SIGTERM.
 * Header-only: each unit test is one program. When the tool has not been
 * built (`make test-unit` alone builds only the tests), tool_start returns
 * 1 and the caller skips; `make` and `make test` build both.
 */
#ifndef TEST_WK_TOOL_H
#define TEST_WK_TOOL_H

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct tool {
    pid_t pid;
    unsigned port;
    char dir[64];
    char log[128];
} tool;

/* 0 started (t->port set), 1 tool not built, -1 failed. argv_extra is NULL-terminated. */
static int tool_start(tool *t, const char *name, const char *const *argv_extra)
{
    char self[PATH_MAX], path[PATH_MAX + 64], portf[128];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    memset(t, 0, sizeof *t);
    if (n <= 0)
        return -1;
    self[n] = '\0';
    char *slash = strrchr(self, '/'); /* <build>/tests/unit/test_x */
    if (slash == NULL)
        return -1;
    *slash = '\0';
    snprintf(path, sizeof path, "%s/../tools/%s", self, name);
    if (access(path, X_OK) != 0)
        return 1;
    snprintf(t->dir, sizeof t->dir, "/tmp/kq_wk_tool.XXXXXX");
    if (mkdtemp(t->dir) == NULL)
        return -1;
    snprintf(portf, sizeof portf, "%s/port", t->dir);
    snprintf(t->log, sizeof t->log, "%s/log", t->dir);
    const char *argv[32] = {path, "--port-file", portf, "--log", t->log};
    int argc = 5;
    for (int i = 0; argv_extra != NULL && argv_extra[i] != NULL && argc < 31; i++)
        argv[argc++] = argv_extra[i];
    argv[argc] = NULL;
    t->pid = fork();
    if (t->pid < 0)
        return -1;
    if (t->pid == 0) {
        if (freopen("/dev/null", "w", stdout) == NULL)
            _exit(126);
        execv(path, (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) { /* 10 s */
        FILE *f = fopen(portf, "r");
        if (f != NULL) {
            int ok = fscanf(f, "%u", &t->port) == 1;
            fclose(f);
            if (ok)
                return 0;
        }
        usleep(20000);
    }
    kill(t->pid, SIGKILL);
    waitpid(t->pid, NULL, 0);
    return -1;
}

/* SIGTERM, wait; returns the exit status (or -1). The log stays readable until tool_clean. */
static int tool_stop(tool *t)
{
    int st = 0;
    if (t->pid <= 0)
        return -1;
    kill(t->pid, SIGTERM);
    if (waitpid(t->pid, &st, 0) != t->pid)
        return -1;
    t->pid = 0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void tool_clean(tool *t)
{
    char p[160];
    if (t->pid > 0)
        tool_stop(t);
    if (t->dir[0] == '\0')
        return;
    unlink(t->log);
    snprintf(p, sizeof p, "%s/port", t->dir);
    unlink(p);
    rmdir(t->dir);
}

#endif

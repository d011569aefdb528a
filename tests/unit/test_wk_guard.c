/*
 * test_wk_guard.c — the outbound guard without a network: the scheme
 * allow-list per kind and the blocked address ranges (IPv4, IPv6 and the
 * IPv4 forms embedded in IPv6). The resolved-address check on real
 * transfers is in test_wk_http.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#include "kq_err.h"
#include "wk_guard.h"

static const char *check(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(ip, ':') != NULL) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
        return wk_guard_addr_blocked((struct sockaddr *)s6, sizeof *s6);
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    s4->sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
    return wk_guard_addr_blocked((struct sockaddr *)s4, sizeof *s4);
}

static void test_addresses(void **state)
{
    (void)state;
    static const struct {
        const char *ip, *why;
    } cases[] = {
        {"127.0.0.1", "loopback"},
        {"127.255.3.4", "loopback"},
        {"10.0.0.1", "private"},
        {"10.255.255.255", "private"},
        {"172.16.0.1", "private"},
        {"172.31.255.255", "private"},
        {"192.168.1.1", "private"},
        {"100.64.0.1", "private"},
        {"198.18.0.1", "private"},
        {"169.254.169.254", "link-local"},
        {"0.0.0.0", "unspecified"},
        {"0.1.2.3", "unspecified"},
        {"224.0.0.1", "multicast"},
        {"255.255.255.255", "reserved"},
        {"::", "unspecified"},
        {"::1", "loopback"},
        {"fe80::1", "link-local"},
        {"febf::1", "link-local"},
        {"fc00::1", "private"},
        {"fd12:3456::1", "private"},
        {"fec0::1", "private"},
        {"ff02::1", "multicast"},
        {"::ffff:127.0.0.1", "loopback"},
        {"::ffff:10.1.2.3", "private"},
        {"::ffff:169.254.1.1", "link-local"},
        {"::ffff:0.0.0.0", "unspecified"},
        {"::127.0.0.1", "loopback"},
        {"64:ff9b::192.168.0.1", "private"},
        /* allowed */
        {"8.8.8.8", NULL},
        {"172.15.255.255", NULL},
        {"172.32.0.0", NULL},
        {"192.167.1.1", NULL},
        {"169.253.1.1", NULL},
        {"100.128.0.1", NULL},
        {"11.0.0.1", NULL},
        {"2001:4860:4860::8888", NULL},
        {"::ffff:8.8.8.8", NULL},
        {"fe00::1", NULL},
        {"2a00:1450::1", NULL},
        {"::2", "unspecified"}, /* IPv4-compatible 0.0.0.2 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = check(cases[i].ip);
        if (cases[i].why == NULL) {
            if (got != NULL)
                fail_msg("%s: blocked as %s", cases[i].ip, got);
        } else {
            if (got == NULL || strcmp(got, cases[i].why) != 0)
                fail_msg("%s: want %s, got %s", cases[i].ip, cases[i].why, got ? got : "allowed");
        }
    }
    struct sockaddr_un un;
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    assert_string_equal(wk_guard_addr_blocked((struct sockaddr *)&un, sizeof un), "family");
    struct sockaddr_in short4;
    memset(&short4, 0, sizeof short4);
    short4.sin_family = AF_INET;
    assert_string_equal(wk_guard_addr_blocked((struct sockaddr *)&short4, 4), "family");
    assert_string_equal(wk_guard_addr_blocked(NULL, 0), "family");
}

static void test_schemes(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(wk_guard_check_url("http://example.com/x", WK_GUARD_HTTP, err, sizeof err), 0);
    assert_int_equal(
        wk_guard_check_url("HTTPS://example.com:8443/", WK_GUARD_HTTP, err, sizeof err), 0);
    static const char *const refused[] = {"file:///etc/passwd",   "gopher://example.com/",
                                          "ftp://example.com/x",  "dict://example.com/",
                                          "ldap://example.com/",  "smtp://example.com/",
                                          "telnet://example.com/"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        assert_int_equal(wk_guard_check_url(refused[i], WK_GUARD_HTTP, err, sizeof err),
                         KQ_EUNSUPPORTED);
        assert_non_null(strstr(err, "not allowed"));
    }
    assert_int_equal(wk_guard_check_url("smtp://mail.example.com", WK_GUARD_SMTP, err, sizeof err),
                     0);
    assert_int_equal(
        wk_guard_check_url("smtps://mail.example.com:465", WK_GUARD_SMTP, err, sizeof err), 0);
    assert_int_equal(wk_guard_check_url("http://mail.example.com", WK_GUARD_SMTP, err, sizeof err),
                     KQ_EUNSUPPORTED);
    assert_int_equal(wk_guard_check_url("", WK_GUARD_HTTP, err, sizeof err), KQ_EINVAL);
    assert_int_equal(wk_guard_check_url(NULL, WK_GUARD_HTTP, err, sizeof err), KQ_EINVAL);
    assert_int_equal(wk_guard_check_url("example.com/x", WK_GUARD_HTTP, err, sizeof err),
                     KQ_EINVAL);
    assert_int_equal(wk_guard_check_url("http://exa mple.com/", WK_GUARD_HTTP, err, sizeof err),
                     KQ_EINVAL);
    assert_int_equal(wk_guard_check_url("http://x/\r\nHost: y", WK_GUARD_HTTP, err, sizeof err),
                     KQ_EINVAL);
    assert_int_equal(wk_guard_check_url("http://:80/path", WK_GUARD_HTTP, err, sizeof err),
                     KQ_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_schemes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

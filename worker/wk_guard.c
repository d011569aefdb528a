/*
 * wk_guard.c — URL scheme allow-list and the resolved-address check done in
 * libcurl's open-socket callback (see wk_guard.h).
 */
#include "wk_guard.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "kq_err.h"

int wk_guard_check_url(const char *url, wk_guard_kind kind, char *errstr, size_t errlen)
{
    CURLU *u;
    char *scheme = NULL, *host = NULL;
    int rc = 0;
    if (url == NULL || url[0] == '\0')
        return kq_seterr(errstr, errlen, KQ_EINVAL, "empty URL");
    for (const char *p = url; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return kq_seterr(errstr, errlen, KQ_EINVAL,
                             "URL contains a blank or control character: '%.200s'", url);
    u = curl_url();
    if (u == NULL)
        return kq_seterr(errstr, errlen, KQ_ENOMEM, "out of memory");
    if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK) {
        rc = kq_seterr(errstr, errlen, KQ_EINVAL, "not an absolute URL: '%.200s'", url);
        goto out;
    }
    if (kind == WK_GUARD_HTTP ? (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)
                              : (strcmp(scheme, "smtp") != 0 && strcmp(scheme, "smtps") != 0)) {
        rc = kq_seterr(errstr, errlen, KQ_EUNSUPPORTED,
                       "scheme '%s' not allowed (only %s): '%.200s'", scheme,
                       kind == WK_GUARD_HTTP ? "http, https" : "smtp, smtps", url);
        goto out;
    }
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || host[0] == '\0') {
        rc = kq_seterr(errstr, errlen, KQ_EINVAL, "URL without a host: '%.200s'", url);
        goto out;
    }
out:
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

/* Why an IPv4 address (host byte order) is blocked, or NULL. */
static const char *v4_blocked(uint32_t a)
{
    if ((a >> 24) == 0)
        return "unspecified";
    if ((a >> 24) == 127)
        return "loopback";
    if ((a >> 24) == 10 || (a >> 20) == (172u << 4 | 1) || (a >> 16) == (192u << 8 | 168) ||
        (a >> 22) == (100u << 2 | 1) /* 100.64/10 */ || (a >> 8) == (192u << 16) /* 192.0.0/24 */ ||
        (a >> 17) == (198u << 7 | 9) /* 198.18/15 */)
        return "private";
    if ((a >> 16) == (169u << 8 | 254))
        return "link-local";
    if ((a >> 28) == 14)
        return "multicast";
    if ((a >> 28) == 15)
        return "reserved";
    return NULL;
}

const char *wk_guard_addr_blocked(const struct sockaddr *sa, size_t len)
{
    if (sa == NULL)
        return "family";
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in in;
        memcpy(&in, sa, sizeof in);
        return v4_blocked(ntohl(in.sin_addr.s_addr));
    }
    if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 in6;
        const uint8_t *b;
        static const uint8_t zero[16];
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b};
        memcpy(&in6, sa, sizeof in6);
        b = in6.sin6_addr.s6_addr;
        if (memcmp(b, zero, 16) == 0)
            return "unspecified";
        if (memcmp(b, zero, 15) == 0 && b[15] == 1)
            return "loopback";
        if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0 || memcmp(b, zero, 12) == 0) {
            uint32_t a =
                (uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15];
            return v4_blocked(a);
        }
        if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
            return "link-local";
        if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0)
            return "private"; /* site-local, deprecated */
        if ((b[0] & 0xfe) == 0xfc)
            return "private"; /* unique local */
        if (b[0] == 0xff)
            return "multicast";
        return NULL;
    }
    return "family";
}

static void addr_str(const struct sockaddr *sa, char *buf, size_t len)
{
    char tmp[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in in;
        memcpy(&in, sa, sizeof in);
        inet_ntop(AF_INET, &in.sin_addr, tmp, sizeof tmp);
    } else if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 in6;
        memcpy(&in6, sa, sizeof in6);
        inet_ntop(AF_INET6, &in6.sin6_addr, tmp, sizeof tmp);
    }
    snprintf(buf, len, "%s", tmp);
}

/* CURLOPT_OPENSOCKETFUNCTION: the last point where the resolved address is known. */
static curl_socket_t guard_opensocket(void *clientp, curlsocktype purpose,
                                      struct curl_sockaddr *address)
{
    wk_guard_ctx *ctx = clientp;
    const char *why = NULL;
    if (purpose != CURLSOCKTYPE_IPCXN)
        why = "family";
    else if (!ctx->allow_private || (address->family != AF_INET && address->family != AF_INET6))
        why = wk_guard_addr_blocked(&address->addr, address->addrlen);
    if (why != NULL) {
        ctx->refused = 1;
        ctx->refused_why = why;
        addr_str(&address->addr, ctx->refused_addr, sizeof ctx->refused_addr);
        return CURL_SOCKET_BAD;
    }
    return socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

int wk_guard_apply(CURL *h, wk_guard_kind kind, wk_guard_ctx *ctx, char *errstr, size_t errlen)
{
    const char *protos = kind == WK_GUARD_HTTP ? "http,https" : "smtp,smtps";
    ctx->refused = 0;
    ctx->refused_addr[0] = '\0';
    ctx->refused_why = NULL;
    if (curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, protos) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, protos) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_MAXREDIRS, 0L) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_PROXY, "") != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, guard_opensocket) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, ctx) != CURLE_OK)
        return kq_seterr(errstr, errlen, KQ_EUNSUPPORTED,
                         "libcurl lacks an option the outbound guard needs");
    return 0;
}

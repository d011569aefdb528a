/*
 * wk_guard.h — outbound safety for the worker's libcurl transfers.
 *
 * Two checks, both on by construction for every transfer the engine makes:
 *
 *  1. The URL (wk_guard_check_url, at submit): absolute, with a host, and a
 *     scheme from the allow-list of its kind (http/https for HTTP actions,
 *     smtp/smtps for email). file://, gopher://, ftp://, dict:// ... are
 *     refused before anything is sent. wk_guard_apply pins the same list in
 *     libcurl (CURLOPT_PROTOCOLS_STR and CURLOPT_REDIR_PROTOCOLS_STR), turns
 *     redirects off (CURLOPT_FOLLOWLOCATION 0: a 3xx is the outcome) and
 *     disables proxies from the environment (CURLOPT_PROXY "").
 *
 *  2. The resolved address (CURLOPT_OPENSOCKETFUNCTION): every address libcurl
 *     is about to connect to — after DNS, so a name resolving to 127.0.0.1 is
 *     caught — is checked with wk_guard_addr_blocked. Refused unless
 *     allow_private: 0.0.0.0/8, 10/8, 100.64/10, 127/8, 169.254/16,
 *     172.16/12, 192.0.0/24, 192.168/16, 198.18/15, 224/4, 240/4 (broadcast
 *     included); ::, ::1, fe80::/10, fec0::/10, fc00::/7, ff00::/8; and the
 *     IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d) and NAT64
 *     (64:ff9b::a.b.c.d) forms of the IPv4 ranges. Non-IP families are
 *     always refused. A refused transfer fails with WK_R_REFUSED, naming the
 *     address.
 *
 * Reentrant; a wk_guard_ctx belongs to one transfer.
 */
#ifndef WK_GUARD_H
#define WK_GUARD_H

#include <curl/curl.h>
#include <stddef.h>
#include <sys/socket.h>

typedef enum wk_guard_kind { WK_GUARD_HTTP = 0, WK_GUARD_SMTP } wk_guard_kind;

/* Per-transfer state of the address check; lives as long as the easy handle. */
typedef struct wk_guard_ctx {
    int allow_private;       /* 1: loopback/private/link-local allowed (tests, local receivers) */
    int refused;             /* set by the socket callback when it refused an address */
    char refused_addr[64];   /* the address it refused, printable */
    const char *refused_why; /* "loopback", "private", ... (static) */
} wk_guard_ctx;

/*
 * 0 if `url` is an absolute URL with a host and an allowed scheme for `kind`;
 * KQ_EUNSUPPORTED for another scheme, KQ_EINVAL if it does not parse.
 */
int wk_guard_check_url(const char *url, wk_guard_kind kind, char *errstr, size_t errlen);

/*
 * NULL if the address may be connected to; otherwise a static word saying
 * why not ("loopback", "private", "link-local", "unspecified", "multicast",
 * "reserved", "family"). `sa` holds `len` bytes.
 */
const char *wk_guard_addr_blocked(const struct sockaddr *sa, size_t len);

/* Set the guard's options on `h` (protocols, no redirects, no proxy, socket check). */
int wk_guard_apply(CURL *h, wk_guard_kind kind, wk_guard_ctx *ctx, char *errstr, size_t errlen);

#endif

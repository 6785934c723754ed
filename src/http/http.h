/*
 * http.h - the thin HTTP/1.1 layer under DICOMweb (PS3.18), the REST API and
 * the pages: a libmicrohttpd server with a router, requests whose bodies are
 * streamed to the handler, responses from memory, from a file range
 * (sendfile) or from a producer callback, CORS, cross-origin isolation
 * headers, an authentication hook, request limits, an access log line per
 * request and Prometheus metrics (text exposition format 0.0.4).
 *
 * A handler runs on one of the server's threads. It is called once the
 * request's headers are in, and either responds at once or asks for the
 * body (http_request_read_body), which then arrives in chunks; the handler
 * responds from its on_complete callback. Every http_respond_* call must be
 * made from within one of these callbacks, and exactly once per request.
 */
#ifndef CP_HTTP_HTTP_H
#define CP_HTTP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/buf.h"
#include "core/status.h"

typedef struct http_server http_server;
typedef struct http_request http_request;

/* Methods, usable as a mask when registering a route. GET also answers HEAD. */
typedef enum {
    HTTP_GET = 1 << 0,
    HTTP_HEAD = 1 << 1,
    HTTP_POST = 1 << 2,
    HTTP_PUT = 1 << 3,
    HTTP_DELETE = 1 << 4,
    HTTP_PATCH = 1 << 5,
    HTTP_OPTIONS = 1 << 6,
} http_method;

/* Route flags. */
enum {
    HTTP_ROUTE_PUBLIC = 1 << 0,     /* the auth hook is not called */
    HTTP_ROUTE_LARGE_BODY = 1 << 1, /* max_body_large instead of max_body_small */
    HTTP_ROUTE_ISOLATED = 1 << 2,   /* COOP/COEP headers on its responses */
};

/* What the auth hook decides. */
typedef enum {
    HTTP_AUTH_ALLOW,
    HTTP_AUTH_UNAUTHENTICATED,      /* 401 with WWW-Authenticate: Bearer */
    HTTP_AUTH_FORBIDDEN,            /* 403 */
    HTTP_AUTH_UNAVAILABLE,          /* 503: what identities are checked against is away */
    HTTP_AUTH_RESPONDED,            /* the hook answered the request itself */
} http_auth_decision;

/*
 * Called for every request to a route that is not HTTP_ROUTE_PUBLIC, after
 * routing and before the handler. It may attach an identity to the request
 * (http_request_set_identity).
 */
typedef http_auth_decision (*http_auth_fn)(http_request *req, void *ctx);

/* One access-log line's facts; the path is the route pattern, never the URL. */
typedef struct http_access_entry {
    const char *request_id;
    const char *method;
    const char *route;              /* "/studies/{study}", or "-" when unrouted */
    const char *peer;
    int status;
    uint64_t bytes;                 /* response body bytes handed to the client */
    double seconds;
} http_access_entry;

typedef void (*http_access_log_fn)(const http_access_entry *entry, void *ctx);

typedef struct http_config {
    const char *bind_address;       /* "127.0.0.1" (default), "0.0.0.0", "::" */
    uint16_t port;                  /* 0: any free port (see http_server_port) */
    unsigned threads;               /* thread pool size; 0: 4 */
    const char *tls_cert_path;      /* PEM; both set: HTTPS */
    const char *tls_key_path;
    const char *cors_origins;       /* NULL: no CORS; "*" or "https://a, https://b" */
    const char *isolated_prefix;    /* COOP/COEP under it; NULL: "/viewer/", "": none */
    size_t max_header_bytes;        /* 0: HTTP_HEADER_BYTES_MAX */
    size_t max_url_bytes;           /* 0: HTTP_URL_MAX */
    uint64_t max_body_small;        /* 0: HTTP_BODY_SMALL_MAX */
    uint64_t max_body_large;        /* 0: HTTP_BODY_LARGE_MAX */
    unsigned timeout_seconds;       /* 0: HTTP_CONNECTION_TIMEOUT_S */
    const char *static_token;       /* default auth: "Authorization: Bearer <token>" */
    bool trust_proxy;               /* honour Forwarded / X-Forwarded-* for base URLs */
    bool no_metrics_route;          /* do not register GET /metrics */
    http_auth_fn auth;              /* NULL: the default described above */
    void *auth_ctx;
    http_access_log_fn access_log;  /* NULL: one cp_log info line, event=http.access */
    void *access_log_ctx;
    /* Added: the comment line kept-open event streams get; 0: HTTP_EVENTS_KEEPALIVE_S */
    unsigned events_keepalive_ms;
} http_config;

/*
 * Called once the headers of a request to the route are in. It responds (or
 * calls http_request_read_body) before it returns; returning anything but
 * CP_OK without having responded answers 500.
 */
typedef cp_status (*http_handler_fn)(http_request *req, void *ctx);

/* Body callbacks; on_body gets each chunk as it arrives, in order. */
typedef cp_status (*http_body_fn)(http_request *req, const uint8_t *chunk, size_t len,
                                  void *ctx);
/* After the last chunk; must respond. */
typedef cp_status (*http_complete_fn)(http_request *req, void *ctx);

/*
 * Creates a server (not yet listening). cfg is copied, strings included.
 * TLS certificate and key are read here, so a bad path fails early.
 */
cp_status http_server_create(const http_config *cfg, http_server **out, cp_error *err);

/*
 * Registers a route: methods is a mask of http_method; pattern is a path
 * whose segments may be "{name}" parameters, and whose last segment may be
 * "*" (matches the rest). Routes are tried in registration order. Must be
 * called before http_server_start.
 */
cp_status http_server_route(http_server *s, unsigned methods, const char *pattern,
                            unsigned flags, http_handler_fn handler, void *ctx);

/* Starts listening and serving. */
cp_status http_server_start(http_server *s, cp_error *err);

/* The port the server listens on (useful after binding port 0). */
uint16_t http_server_port(const http_server *s);

/*
 * Stops accepting connections, lets the ones in progress finish for at most
 * `grace_ms` milliseconds, then closes everything. Safe to call twice.
 */
void http_server_stop(http_server *s, unsigned grace_ms);

/* Stops (without grace) if needed and frees the server. */
void http_server_destroy(http_server *s);

/* --- requests -------------------------------------------------------------- */

http_method http_request_method(const http_request *req);
const char *http_request_method_name(const http_request *req);

/* The decoded path, without the query string. */
const char *http_request_path(const http_request *req);

/* The route pattern that matched. */
const char *http_request_route(const http_request *req);

/* A path parameter by name ("study" for "{study}"), decoded; NULL if none. */
const char *http_request_param(const http_request *req, const char *name);

/*
 * Query parameters in their order, repeated keys kept, percent-decoded with
 * '+' as space. http_request_query returns the first value of `name`.
 */
size_t http_request_query_count(const http_request *req);
cp_status http_request_query_at(const http_request *req, size_t i, const char **name,
                                const char **value);
const char *http_request_query(const http_request *req, const char *name);

/* A request header (case-insensitive name), or NULL. */
const char *http_request_header(const http_request *req, const char *name);

/* The peer's address as text ("127.0.0.1", "::1"). */
const char *http_request_peer(const http_request *req);
bool http_request_peer_is_loopback(const http_request *req);

/* The request id, also sent as X-Request-Id and written in the access log. */
const char *http_request_id(const http_request *req);

/* Content-Length, or -1 when absent (chunked or no body). */
int64_t http_request_content_length(const http_request *req);

/* The absolute base URL the client used (see http_base_url in accept.h). */
cp_status http_request_base_url(const http_request *req, char *out, size_t cap);

/* What the auth hook attached; free_fn (may be NULL) runs when the request ends. */
void http_request_set_identity(http_request *req, void *identity, void (*free_fn)(void *));
void *http_request_identity(const http_request *req);

/*
 * Asks for the body. on_body receives it chunk by chunk (never the whole of
 * it at once, unless it is small); on_complete runs after the last chunk
 * (also when there is no body) and responds. When on_body fails (or the
 * body passes the route's limit), the rest of the body is read and dropped
 * and the request is answered with the status the failure maps to (see
 * http_status_for); a client that keeps sending more than
 * HTTP_BODY_DISCARD_MAX past that point has its connection closed.
 */
cp_status http_request_read_body(http_request *req, http_body_fn on_body,
                                 http_complete_fn on_complete, void *ctx);

/*
 * Runs fn(ctx) when the request ends, whatever happened to it (answered,
 * failed, or the client went away): where a handler frees what its body
 * callbacks use. One per request; a second call replaces the first.
 */
void http_request_on_cleanup(http_request *req, void (*fn)(void *), void *ctx);

/* --- responses ------------------------------------------------------------- */

/* Adds a header to the response that comes next (before any http_respond_*). */
cp_status http_response_header(http_request *req, const char *name, const char *value);

/*
 * Responds with a copy of data. JSON types (application/json and every
 * "+json") are gzipped when the client accepts gzip and they are large
 * enough to gain from it.
 */
cp_status http_respond_buffer(http_request *req, int status, const char *content_type,
                              const void *data, size_t len);

/*
 * Responds with `length` bytes of fd from `offset`, sent with sendfile where
 * the connection allows (not over TLS). The fd is owned by the response from
 * here on (also on failure) and closed when it is sent; a negative fd (a
 * failed open) is CP_ERR_IO.
 */
cp_status http_respond_fd(http_request *req, int status, const char *content_type, int fd,
                          uint64_t offset, uint64_t length);

/*
 * A producer writes up to `max` bytes at `buf` for body offset `pos` and
 * returns how many (more than 0), HTTP_STREAM_END at the end, or
 * HTTP_STREAM_ERROR to cut the connection.
 */
#define HTTP_STREAM_END   ((ssize_t)-1)
#define HTTP_STREAM_ERROR ((ssize_t)-2)
typedef ssize_t (*http_stream_fn)(void *ctx, uint64_t pos, uint8_t *buf, size_t max);

/*
 * Responds with a body made on the fly (multipart/related assembled from
 * stored instances). size is the total, or -1 when unknown (chunked). free_fn
 * (may be NULL) runs with ctx once the response is done, also on failure.
 */
cp_status http_respond_stream(http_request *req, int status, const char *content_type,
                              int64_t size, http_stream_fn produce, void *ctx,
                              void (*free_fn)(void *));

/* One piece of a body in memory (http_respond_iovec). */
typedef struct http_iovec {
    const void *base;
    size_t len;
} http_iovec;

/*
 * Responds with the n pieces one after the other, the length told, sent
 * straight from them (sendmsg over the pieces where the connection allows,
 * no copy into a buffer of the server's): for bodies whose bytes are mapped
 * already, such as blobs' pages. The array is copied; what the pieces point
 * to must stay valid until free_fn(ctx) runs (may be NULL), once the response
 * is done, also on failure.
 */
cp_status http_respond_iovec(http_request *req, int status, const char *content_type,
                             const http_iovec *parts, size_t n, void (*free_fn)(void *),
                             void *ctx);

/* Responds {"error": message, "status": status} as application/json. */
cp_status http_respond_error(http_request *req, int status, const char *message);

/* True once a response has been queued for req. */
bool http_request_responded(const http_request *req);

/* The HTTP status that fits a cp_status (CP_ERR_NOT_FOUND: 404, ...). */
int http_status_for(cp_status st);

/* --- metrics ----------------------------------------------------------------- */

/*
 * Process-wide metrics, exported by GET /metrics. name is a Prometheus
 * metric name ("cloudpacs_instances_stored_total"); labels is NULL or the
 * text between the braces ("ae=\"CT1\""), escaped by the caller. A new
 * series past HTTP_METRICS_SERIES_MAX is refused with CP_ERR_LIMIT.
 */
cp_status http_metrics_counter_add(const char *name, const char *labels, double value);
cp_status http_metrics_gauge_set(const char *name, const char *labels, double value);

/* Appends the whole exposition text to out (what GET /metrics answers). */
cp_status http_metrics_render(cp_buf *out);

/* --- server-sent events (added) ------------------------------------------------ */

/*
 * A text/event-stream response that stays open (the WHATWG HTML "server-sent
 * events" format): events are queued from any thread and written as the
 * client takes them. While nothing is queued the connection is suspended,
 * so an open stream holds no thread of the pool. Each stream's queue is
 * bounded (HTTP_EVENTS_QUEUE_MAX bytes): a client that falls that far
 * behind is dropped, not buffered without end. A comment line every
 * events_keepalive_ms keeps proxies from closing an idle stream, and is how
 * a client that went away is noticed.
 */
typedef struct http_events http_events;

/*
 * Answers 200 text/event-stream (Cache-Control: no-cache, X-Accel-Buffering:
 * no) and keeps the connection open. *out is the owner's handle: release it
 * with http_events_release (which also ends the stream), whether or not
 * the client is still there. CP_ERR_UNAVAILABLE while the server stops.
 */
cp_status http_respond_events(http_request *req, http_events **out);

/*
 * Queues one event: "id:" (id may be NULL), "event:" (NULL: the default
 * "message") and data, one "data:" line per line of it. CP_ERR_STOPPED when
 * the client is gone; CP_ERR_LIMIT when the queue overflowed (the client
 * is dropped).
 */
cp_status http_events_send(http_events *ev, const char *event, const char *data,
                           const char *id);

/*
 * fn(ctx) runs once, on a server thread, when the stream ends (the client
 * went away, was dropped, or the server stopped); at once when it already
 * has. fn must not call http_events_release.
 */
void http_events_on_close(http_events *ev, void (*fn)(void *ctx), void *ctx);

/* Whether the stream is still open. */
bool http_events_open(const http_events *ev);

/* The owner lets go: the stream ends, the memory goes with its last user. */
void http_events_release(http_events *ev);

#endif

/*
 * test_http_server.c - the HTTP server end to end (RFC 9110, RFC 9112):
 * a real server on 127.0.0.1 and a client made of plain sockets that sends
 * raw HTTP/1.1 and reads the raw answer, so that what is tested is what
 * goes over the wire: routing and parameters, 404/405, a 50 MB upload
 * streamed through bounded memory, file and producer responses, gzip,
 * CORS preflight, the auth hook, the header and body limits, metrics,
 * and server-sent event streams that hold no thread while they wait.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/limits.h"
#include "http/http.h"
#include "http/multipart.h"

#define TOKEN "s3cret-token"

typedef struct response {
    int status;
    cp_buf head;        /* status line and headers, NUL-terminated */
    cp_buf body;        /* de-chunked */
} response;

static http_server *open_srv;       /* no token: loopback open access */
static http_server *token_srv;      /* static token, CORS, small limits */

/* --- the client ------------------------------------------------------------------- */

static int dial(uint16_t port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static void send_all(int fd, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

        assert_true(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

/* Buffered reads from a socket. */
typedef struct reader {
    int fd;
    char buf[65536];
    size_t len;
    size_t pos;
} reader;

static int rd_byte(reader *r)
{
    if (r->pos == r->len) {
        ssize_t n = recv(r->fd, r->buf, sizeof(r->buf), 0);

        if (n <= 0)
            return -1;
        r->len = (size_t)n;
        r->pos = 0;
    }
    return (unsigned char)r->buf[r->pos++];
}

static bool rd_line(reader *r, cp_buf *line)
{
    int c;

    cp_buf_reset(line);
    while ((c = rd_byte(r)) >= 0) {
        if (c == '\n')
            return true;
        if (c != '\r')
            cp_buf_append_byte(line, (uint8_t)c);
    }
    return false;
}

/* A response header's value from the head text, or NULL (static buffer). */
static const char *header_of(const response *resp, const char *name)
{
    static char value[1024];
    const char *p = (const char *)resp->head.data;
    size_t n = strlen(name);

    while (p && (p = strchr(p, '\n')) != NULL) {
        p++;
        if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
            size_t len = strcspn(p + n + 1, "\r\n");
            const char *v = p + n + 1;

            while (*v == ' ')
                v++, len--;
            snprintf(value, sizeof(value), "%.*s", (int)len, v);
            return value;
        }
    }
    return NULL;
}

/* Reads one response on a connection (is_head: no body follows). */
static void read_response(reader *r, response *resp, bool is_head)
{
    cp_buf line = CP_BUF_INIT;
    const char *cl, *te;

    memset(resp, 0, sizeof(*resp));
    do {
        assert_true(rd_line(r, &line));
        assert_true(line.len > 12);
        resp->status = atoi((char *)line.data + 9);
    } while (resp->status == 100 && rd_line(r, &line));
    cp_buf_appendf(&resp->head, "%s\n", (char *)line.data);
    while (rd_line(r, &line) && line.len > 0)
        cp_buf_appendf(&resp->head, "%s\n", (char *)line.data);

    cl = header_of(resp, "Content-Length");
    te = header_of(resp, "Transfer-Encoding");
    if (is_head || resp->status == 204 || resp->status == 304) {
        /* no body */
    } else if (te && strcasecmp(te, "chunked") == 0) {
        for (;;) {
            size_t size;

            assert_true(rd_line(r, &line));
            size = strtoul((char *)line.data, NULL, 16);
            if (size == 0) {
                rd_line(r, &line);
                break;
            }
            for (size_t i = 0; i < size; i++)
                cp_buf_append_byte(&resp->body, (uint8_t)rd_byte(r));
            rd_line(r, &line);
        }
    } else if (cl) {
        size_t size = strtoul(cl, NULL, 10);

        for (size_t i = 0; i < size; i++) {
            int c = rd_byte(r);

            assert_true(c >= 0);
            cp_buf_append_byte(&resp->body, (uint8_t)c);
        }
    } else {
        int c;

        while ((c = rd_byte(r)) >= 0)
            cp_buf_append_byte(&resp->body, (uint8_t)c);
    }
    cp_buf_append_byte(&resp->body, 0);
    resp->body.len--;
    cp_buf_free(&line);
}

/* One request on a fresh connection. */
static void exchange(http_server *s, const char *request, response *resp)
{
    reader *r = cp_calloc(1, sizeof(*r));

    r->fd = dial(http_server_port(s));
    send_all(r->fd, request, strlen(request));
    read_response(r, resp, strncmp(request, "HEAD ", 5) == 0);
    close(r->fd);
    cp_free(r);
}

static void response_free(response *resp)
{
    cp_buf_free(&resp->head);
    cp_buf_free(&resp->body);
}

/* --- handlers ---------------------------------------------------------------------- */

static cp_status echo_handler(http_request *req, void *ctx)
{
    cp_buf b = CP_BUF_INIT;
    cp_status st;

    (void)ctx;
    cp_buf_appendf(&b, "study=%s series=%s route=%s", http_request_param(req, "study"),
                   http_request_param(req, "series"), http_request_route(req));
    for (size_t i = 0; i < http_request_query_count(req); i++) {
        const char *n, *v;

        http_request_query_at(req, i, &n, &v);
        cp_buf_appendf(&b, " %s=[%s]", n, v);
    }
    st = http_respond_buffer(req, 200, "text/plain", b.data, b.len);
    cp_buf_free(&b);
    return st;
}

static cp_status unknown_uid(http_request *req, void *ctx)
{
    (void)req;
    (void)ctx;
    return CP_ERR_NOT_FOUND;
}

static cp_status json_handler(http_request *req, void *ctx)
{
    cp_buf b = CP_BUF_INIT;
    cp_status st;

    (void)ctx;
    cp_buf_append_str(&b, "[");
    for (int i = 0; i < 300; i++)
        cp_buf_appendf(&b, "%s{\"0020000D\": {\"vr\": \"UI\", \"Value\": [\"1.2.3.%d\"]}}",
                       i ? ", " : "", i);
    cp_buf_append_str(&b, "]");
    st = http_respond_buffer(req, 200, "application/dicom+json", b.data, b.len);
    cp_buf_free(&b);
    return st;
}

typedef struct upload {
    uint64_t bytes;
    uint32_t crc;
    size_t max_chunk;
    size_t chunks;
} upload;

static cp_status upload_body(http_request *req, const uint8_t *chunk, size_t len, void *ctx)
{
    upload *u = ctx;

    (void)req;
    u->bytes += len;
    u->crc = (uint32_t)crc32(u->crc, chunk, (uInt)len);
    u->chunks++;
    if (len > u->max_chunk)
        u->max_chunk = len;
    return CP_OK;
}

static cp_status upload_done(http_request *req, void *ctx)
{
    upload *u = ctx;
    char text[160];
    cp_status st;

    snprintf(text, sizeof(text), "bytes=%llu crc=%08x max_chunk=%zu chunks=%zu",
             (unsigned long long)u->bytes, u->crc, u->max_chunk, u->chunks);
    st = http_respond_buffer(req, 200, "text/plain", text, strlen(text));
    return st;
}

static cp_status upload_handler(http_request *req, void *ctx)
{
    upload *u = cp_calloc(1, sizeof(*u));

    (void)ctx;
    if (!u)
        return CP_ERR_NOMEM;
    http_request_on_cleanup(req, cp_free, u);
    return http_request_read_body(req, upload_body, upload_done, u);
}

/* A STOW-RS-like route: the body goes through the multipart reader. */
static cp_status stow_body(http_request *req, const uint8_t *chunk, size_t len, void *ctx)
{
    (void)req;
    return http_multipart_feed(ctx, chunk, len, NULL);
}

static cp_status stow_done(http_request *req, void *ctx)
{
    http_multipart_reader *mr = ctx;
    char text[64];
    cp_status st = http_multipart_finish(mr, NULL);

    if (st != CP_OK)
        return http_respond_error(req, 400, cp_status_summary(st));
    snprintf(text, sizeof(text), "{\"parts\": %zu}", http_multipart_part_count(mr));
    return http_respond_buffer(req, 200, "application/dicom+json", text, strlen(text));
}

static void stow_free(void *ctx)
{
    http_multipart_reader_destroy(ctx);
}

static cp_status stow_handler(http_request *req, void *ctx)
{
    char boundary[HTTP_MULTIPART_BOUNDARY_MAX + 1];
    http_multipart_reader *mr;
    cp_status st;

    (void)ctx;
    if (http_multipart_boundary_parse(http_request_header(req, "Content-Type"), boundary,
                                      sizeof(boundary)) != CP_OK)
        return http_respond_error(req, 415, "expected multipart/related with a boundary");
    st = http_multipart_reader_create(boundary, NULL, NULL, NULL, &mr, NULL);
    if (st != CP_OK)
        return st;
    http_request_on_cleanup(req, stow_free, mr);
    return http_request_read_body(req, stow_body, stow_done, mr);
}

static char fd_path[64];

static cp_status fd_handler(http_request *req, void *ctx)
{
    int fd = open(fd_path, O_RDONLY);

    (void)ctx;
    return http_respond_fd(req, 200, "application/octet-stream", fd, 1000, 5000);
}

typedef struct producer {
    uint64_t total;
} producer;

static ssize_t produce(void *ctx, uint64_t pos, uint8_t *buf, size_t max)
{
    producer *p = ctx;
    size_t n = 0;

    if (pos >= p->total)
        return HTTP_STREAM_END;
    while (n < max && pos + n < p->total && n < 777) {
        buf[n] = (uint8_t)('a' + (pos + n) % 26);
        n++;
    }
    return (ssize_t)n;
}

static cp_status stream_handler(http_request *req, void *ctx)
{
    producer *p = cp_malloc(sizeof(*p));

    (void)ctx;
    p->total = 1000000;
    return http_respond_stream(req, 200, "multipart/related; boundary=x", -1, produce, p,
                               cp_free);
}

/* A told length: the body is read into blocks of up to 512 KiB, not chunked. */
static cp_status sized_stream_handler(http_request *req, void *ctx)
{
    producer *p = cp_malloc(sizeof(*p));

    (void)ctx;
    p->total = 1000000;
    return http_respond_stream(req, 200, "application/octet-stream", 1000000, produce, p,
                               cp_free);
}

static atomic_int iovec_freed;

static void iovec_done(void *ctx)
{
    cp_free(ctx);
    atomic_fetch_add(&iovec_freed, 1);
}

/* Three pieces: a head, 700000 bytes of a pattern, a tail. */
static cp_status iovec_handler(http_request *req, void *ctx)
{
    uint8_t *big = cp_malloc(700000);
    http_iovec parts[3];

    (void)ctx;
    for (size_t i = 0; i < 700000; i++)
        big[i] = (uint8_t)(i % 253);
    parts[0] = (http_iovec){ "head-", 5 };
    parts[1] = (http_iovec){ big, 700000 };
    parts[2] = (http_iovec){ "-tail", 5 };
    return http_respond_iovec(req, 200, "application/octet-stream", parts, 3, iovec_done, big);
}

static cp_status viewer_handler(http_request *req, void *ctx)
{
    (void)ctx;
    return http_respond_buffer(req, 200, "text/html", "<html></html>", 13);
}

typedef struct access_capture {
    pthread_mutex_t lock;
    char last[512];
} access_capture;

static access_capture captured = { PTHREAD_MUTEX_INITIALIZER, "" };

static void capture_access(const http_access_entry *e, void *ctx)
{
    access_capture *c = ctx;

    pthread_mutex_lock(&c->lock);
    snprintf(c->last, sizeof(c->last), "%s %s %d %llu", e->method, e->route, e->status,
             (unsigned long long)e->bytes);
    pthread_mutex_unlock(&c->lock);
}

/* The last access-log entry once it names `route` (it is written after the reply). */
static const char *last_access(const char *route)
{
    static char copy[512];

    for (int i = 0; i < 200; i++) {
        pthread_mutex_lock(&captured.lock);
        memcpy(copy, captured.last, sizeof(copy));
        pthread_mutex_unlock(&captured.lock);
        if (strstr(copy, route))
            break;
        usleep(5000);
    }
    return copy;
}

static int setup(void **state)
{
    http_config cfg = { .port = 0, .threads = 2, .access_log = capture_access,
                        .access_log_ctx = &captured };
    http_config tcfg = { .port = 0, .threads = 2, .static_token = TOKEN,
                         .cors_origins = "https://viewer.example, https://other.example",
                         .max_header_bytes = 4096, .max_body_small = 1000 };
    FILE *f;

    (void)state;
    snprintf(fd_path, sizeof(fd_path), "/tmp/test_http_fd_%d", (int)getpid());
    f = fopen(fd_path, "wb");
    for (int i = 0; i < 10000; i++)
        fputc(i % 251, f);
    fclose(f);

    if (http_server_create(&cfg, &open_srv, NULL) != CP_OK ||
        http_server_route(open_srv, HTTP_GET, "/dicom-web/studies/{study}/series/{series}", 0,
                          echo_handler, NULL) != CP_OK ||
        http_server_route(open_srv, HTTP_GET, "/dicom-web/studies/{study}", 0, unknown_uid,
                          NULL) != CP_OK ||
        http_server_route(open_srv, HTTP_GET, "/json", 0, json_handler, NULL) != CP_OK ||
        http_server_route(open_srv, HTTP_POST | HTTP_PUT, "/upload", HTTP_ROUTE_LARGE_BODY,
                          upload_handler, NULL) != CP_OK ||
        http_server_route(open_srv, HTTP_GET, "/file", 0, fd_handler, NULL) != CP_OK ||
        http_server_route(open_srv, HTTP_POST, "/dicom-web/studies", HTTP_ROUTE_LARGE_BODY,
                          stow_handler, NULL) != CP_OK ||
        http_server_route(open_srv, HTTP_GET, "/stream", 0, stream_handler, NULL) != CP_OK ||
        http_server_route(open_srv, HTTP_GET, "/sized", 0, sized_stream_handler,
                          NULL) != CP_OK ||
        http_server_route(open_srv, HTTP_GET, "/iovec", 0, iovec_handler, NULL) != CP_OK ||
        http_server_route(open_srv, HTTP_GET, "/viewer/*", 0, viewer_handler, NULL) != CP_OK ||
        http_server_start(open_srv, NULL) != CP_OK)
        return -1;

    if (http_server_create(&tcfg, &token_srv, NULL) != CP_OK ||
        http_server_route(token_srv, HTTP_GET, "/json", 0, json_handler, NULL) != CP_OK ||
        http_server_route(token_srv, HTTP_GET, "/health", HTTP_ROUTE_PUBLIC, viewer_handler,
                          NULL) != CP_OK ||
        http_server_route(token_srv, HTTP_POST, "/small", 0, upload_handler, NULL) != CP_OK ||
        http_server_start(token_srv, NULL) != CP_OK)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    http_server_stop(open_srv, 1000);
    http_server_destroy(open_srv);
    http_server_destroy(token_srv);
    unlink(fd_path);
    return 0;
}

/* --- tests ------------------------------------------------------------------------- */

static void test_routing(void **state)
{
    response r;

    (void)state;
    exchange(open_srv, "GET /dicom-web/studies/1.2.3/series/4%2F5?a=1&b=x+y&a=2&c=%41&d "
                       "HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal((char *)r.body.data,
                        "study=1.2.3 series=4/5 route=/dicom-web/studies/{study}/series/{series}"
                        " a=[1] b=[x y] a=[2] c=[A] d=[]");
    assert_non_null(header_of(&r, "X-Request-Id"));
    response_free(&r);

    /* The access log names the route, not the URL with its query. */
    assert_string_equal(last_access("/dicom-web"),
                        "GET /dicom-web/studies/{study}/series/{series} 200 102");

    exchange(open_srv, "GET /nothing/here HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    assert_int_equal(r.status, 404);
    assert_string_equal(header_of(&r, "Content-Type"), "application/json");
    assert_string_equal((char *)r.body.data, "{\"error\": \"no such resource\", \"status\": 404}");
    response_free(&r);

    exchange(open_srv, "GET /dicom-web/studies/9.9 HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    assert_int_equal(r.status, 404);
    assert_string_equal((char *)r.body.data, "{\"error\": \"not found\", \"status\": 404}");
    response_free(&r);

    exchange(open_srv, "DELETE /json HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    assert_int_equal(r.status, 405);
    assert_string_equal(header_of(&r, "Allow"), "GET, HEAD");
    response_free(&r);

    exchange(open_srv, "HEAD /json HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, 0);
    response_free(&r);

    exchange(open_srv, "GET /viewer/index.html HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(header_of(&r, "Cross-Origin-Opener-Policy"), "same-origin");
    assert_string_equal(header_of(&r, "Cross-Origin-Embedder-Policy"), "require-corp");
    response_free(&r);
    exchange(open_srv, "GET /json HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    assert_null(header_of(&r, "Cross-Origin-Opener-Policy"));
    response_free(&r);
}

static void test_keep_alive(void **state)
{
    reader *rd = cp_calloc(1, sizeof(*rd));
    response r;

    (void)state;
    rd->fd = dial(http_server_port(open_srv));
    for (int i = 0; i < 3; i++) {
        const char *req = "GET /json HTTP/1.1\r\nHost: x\r\n\r\n";

        send_all(rd->fd, req, strlen(req));
        read_response(rd, &r, false);
        assert_int_equal(r.status, 200);
        response_free(&r);
    }
    close(rd->fd);
    cp_free(rd);
}

static void upload_and_check(const char *first_line, bool chunked, size_t total)
{
    reader *rd = cp_calloc(1, sizeof(*rd));
    uint8_t *piece = cp_malloc(65536);
    uint32_t crc = 0;
    char head[256], want[128];
    response r;

    rd->fd = dial(http_server_port(open_srv));
    if (chunked)
        snprintf(head, sizeof(head), "%s\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                 first_line);
    else
        snprintf(head, sizeof(head), "%s\r\nHost: x\r\nContent-Length: %zu\r\n\r\n",
                 first_line, total);
    send_all(rd->fd, head, strlen(head));
    for (size_t sent = 0; sent < total;) {
        size_t n = total - sent < 65536 ? total - sent : 65536;

        for (size_t i = 0; i < n; i++)
            piece[i] = (uint8_t)((sent + i) * 31 >> 3);
        crc = (uint32_t)crc32(crc, piece, (uInt)n);
        if (chunked) {
            char size[32];

            snprintf(size, sizeof(size), "%zx\r\n", n);
            send_all(rd->fd, size, strlen(size));
        }
        send_all(rd->fd, piece, n);
        if (chunked)
            send_all(rd->fd, "\r\n", 2);
        sent += n;
    }
    if (chunked)
        send_all(rd->fd, "0\r\n\r\n", 5);
    read_response(rd, &r, false);
    assert_int_equal(r.status, 200);
    snprintf(want, sizeof(want), "bytes=%zu crc=%08x ", total, crc);
    assert_memory_equal(r.body.data, want, strlen(want));

    /* Memory stays bounded: no chunk is larger than a connection's buffer. */
    assert_true(strtoul(strstr((char *)r.body.data, "max_chunk=") + 10, NULL, 10) <= 131072);
    response_free(&r);
    close(rd->fd);
    cp_free(piece);
    cp_free(rd);
}

static void test_streamed_upload(void **state)
{
    (void)state;
    upload_and_check("POST /upload HTTP/1.1", false, 50u * 1024 * 1024);
    upload_and_check("PUT /upload HTTP/1.1", true, 3u * 1024 * 1024 + 17);
    upload_and_check("POST /upload HTTP/1.1", false, 0);
}

static void test_fd_and_stream(void **state)
{
    response r;

    (void)state;
    exchange(open_srv, "GET /file HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, 5000);
    for (size_t i = 0; i < 5000; i++)
        assert_int_equal(r.body.data[i], (1000 + i) % 251);
    response_free(&r);

    exchange(open_srv, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(header_of(&r, "Transfer-Encoding"), "chunked");
    assert_int_equal(r.body.len, 1000000);
    for (size_t i = 0; i < 1000000; i += 997)
        assert_int_equal(r.body.data[i], 'a' + i % 26);
    response_free(&r);

    exchange(open_srv, "GET /sized HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_null(header_of(&r, "Transfer-Encoding"));
    assert_string_equal(header_of(&r, "Content-Length"), "1000000");
    assert_int_equal(r.body.len, 1000000);
    for (size_t i = 0; i < 1000000; i += 997)
        assert_int_equal(r.body.data[i], 'a' + i % 26);
    response_free(&r);

    exchange(open_srv, "GET /iovec HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(header_of(&r, "Content-Length"), "700010");
    assert_int_equal(r.body.len, 700010);
    assert_memory_equal(r.body.data, "head-", 5);
    assert_memory_equal(r.body.data + 700005, "-tail", 5);
    for (size_t i = 0; i < 700000; i += 991)
        assert_int_equal(r.body.data[5 + i], i % 253);
    response_free(&r);
    for (int i = 0; i < 200 && atomic_load(&iovec_freed) == 0; i++)
        usleep(5000);
    assert_int_equal(atomic_load(&iovec_freed), 1);
}

static void test_gzip(void **state)
{
    response plain, gz;
    uint8_t *out;
    uLongf out_len;
    z_stream z;

    (void)state;
    exchange(open_srv, "GET /json HTTP/1.1\r\nHost: x\r\n\r\n", &plain);
    assert_null(header_of(&plain, "Content-Encoding"));
    assert_string_equal(header_of(&plain, "Vary"), "Accept-Encoding");
    exchange(open_srv, "GET /json HTTP/1.1\r\nHost: x\r\nAccept-Encoding: br;q=1, gzip;q=0.5"
                       "\r\n\r\n", &gz);
    assert_string_equal(header_of(&gz, "Content-Encoding"), "gzip");
    assert_true(gz.body.len < plain.body.len / 4);

    out_len = plain.body.len + 16;
    out = cp_malloc(out_len);
    memset(&z, 0, sizeof(z));
    assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
    z.next_in = gz.body.data;
    z.avail_in = (uInt)gz.body.len;
    z.next_out = out;
    z.avail_out = (uInt)out_len;
    assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
    assert_int_equal(z.total_out, plain.body.len);
    assert_memory_equal(out, plain.body.data, plain.body.len);
    inflateEnd(&z);
    cp_free(out);
    response_free(&plain);
    response_free(&gz);

    exchange(open_srv, "GET /json HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip;q=0\r\n\r\n",
             &gz);
    assert_null(header_of(&gz, "Content-Encoding"));
    response_free(&gz);
}

static void test_cors(void **state)
{
    response r;

    (void)state;
    exchange(token_srv, "OPTIONS /json HTTP/1.1\r\nHost: x\r\nOrigin: https://viewer.example\r\n"
                        "Access-Control-Request-Method: GET\r\n"
                        "Access-Control-Request-Headers: authorization, accept\r\n\r\n", &r);
    assert_int_equal(r.status, 204);
    assert_string_equal(header_of(&r, "Access-Control-Allow-Origin"), "https://viewer.example");
    assert_string_equal(header_of(&r, "Access-Control-Allow-Methods"), "GET, HEAD");
    assert_string_equal(header_of(&r, "Access-Control-Allow-Headers"), "authorization, accept");
    response_free(&r);

    exchange(token_srv, "OPTIONS /json HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n"
                        "Access-Control-Request-Method: GET\r\n\r\n", &r);
    assert_int_equal(r.status, 403);
    assert_null(header_of(&r, "Access-Control-Allow-Origin"));
    response_free(&r);

    exchange(token_srv, "GET /json HTTP/1.1\r\nHost: x\r\nOrigin: https://other.example\r\n"
                        "Authorization: Bearer " TOKEN "\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(header_of(&r, "Access-Control-Allow-Origin"), "https://other.example");
    response_free(&r);
}

static void test_auth(void **state)
{
    response r;

    (void)state;
    exchange(token_srv, "GET /json HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(header_of(&r, "WWW-Authenticate"), "Bearer"));
    response_free(&r);
    exchange(token_srv, "GET /json HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret-toke\r\n"
                        "\r\n", &r);
    assert_int_equal(r.status, 401);
    response_free(&r);
    exchange(token_srv, "GET /json HTTP/1.1\r\nHost: x\r\nAuthorization: bearer " TOKEN
                        "\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    response_free(&r);
    exchange(token_srv, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    response_free(&r);
}

static void test_limits(void **state)
{
    cp_buf req = CP_BUF_INIT;
    response r;

    (void)state;
    /* Headers over the configured 4 KiB. */
    cp_buf_append_str(&req, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ");
    for (int i = 0; i < 5000; i++)
        cp_buf_append_byte(&req, 'a');
    cp_buf_append_str(&req, "\r\n\r\n");
    exchange(token_srv, (char *)req.data, &r);
    assert_int_equal(r.status, 431);
    response_free(&r);

    /* Headers over what the connection can hold at all. */
    cp_buf_reset(&req);
    cp_buf_append_str(&req, "GET /json HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 200; i++)
        cp_buf_appendf(&req, "X-H%d: %0500d\r\n", i, i);
    cp_buf_append_str(&req, "\r\n");
    exchange(open_srv, (char *)req.data, &r);
    assert_true(r.status == 431 || r.status == 413);
    response_free(&r);

    /* A body over the route's limit is refused before it is sent. */
    exchange(token_srv, "POST /small HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " TOKEN
                        "\r\nContent-Length: 2000000\r\nExpect: 100-continue\r\n\r\n", &r);
    assert_int_equal(r.status, 413);
    response_free(&r);

    /* A chunked body that passes the limit as it arrives. */
    cp_buf_reset(&req);
    cp_buf_append_str(&req, "POST /small HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " TOKEN
                            "\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 3; i++) {
        cp_buf_append_str(&req, "320\r\n");
        for (int j = 0; j < 800; j++)
            cp_buf_append_byte(&req, 'z');
        cp_buf_append_str(&req, "\r\n");
    }
    cp_buf_append_str(&req, "0\r\n\r\n");
    exchange(token_srv, (char *)req.data, &r);
    assert_int_equal(r.status, 413);
    response_free(&r);

    /* A small body within the limit passes. */
    exchange(token_srv, "POST /small HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " TOKEN
                        "\r\nContent-Length: 5\r\n\r\nhello", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr((char *)r.body.data, "bytes=5 "));
    response_free(&r);

    /* A long request target. */
    cp_buf_reset(&req);
    cp_buf_append_str(&req, "GET /json?q=");
    for (int i = 0; i < 9000; i++)
        cp_buf_append_byte(&req, 'u');
    cp_buf_append_str(&req, " HTTP/1.1\r\nHost: x\r\n\r\n");
    exchange(open_srv, (char *)req.data, &r);
    assert_true(r.status == 414 || r.status == 431);
    response_free(&r);
    cp_buf_free(&req);
}

static void test_metrics(void **state)
{
    response r;
    const char *body;

    (void)state;
    assert_int_equal(http_metrics_counter_add("cloudpacs_instances_stored_total",
                                              "source=\"stow\"", 3), CP_OK);
    assert_int_equal(http_metrics_gauge_set("cloudpacs_dicom_associations", NULL, 2), CP_OK);
    assert_int_equal(http_metrics_counter_add("bad name", NULL, 1), CP_ERR_INVALID);
    assert_int_equal(http_metrics_gauge_set("cloudpacs_instances_stored_total", NULL, 1),
                     CP_ERR_LIMIT);

    exchange(open_srv, "GET /json HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    response_free(&r);
    exchange(open_srv, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(header_of(&r, "Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
    body = (const char *)r.body.data;
    assert_non_null(strstr(body, "# TYPE http_requests_total counter\n"));
    assert_non_null(strstr(body, "http_requests_total{route=\"/json\",code=\"200\"} "));
    assert_non_null(strstr(body, "http_requests_total{route=\"-\",code=\"404\"} "));
    assert_non_null(strstr(body, "# TYPE http_request_duration_seconds histogram\n"));
    assert_non_null(strstr(body, "http_request_duration_seconds_bucket{route=\"/json\","
                                 "le=\"+Inf\"} "));
    assert_non_null(strstr(body, "http_request_duration_seconds_count{route=\"/json\"} "));
    assert_non_null(strstr(body, "http_response_bytes_total{route=\"/upload\"} "));
    assert_non_null(strstr(body, "cloudpacs_instances_stored_total{source=\"stow\"} 3\n"));
    assert_non_null(strstr(body, "cloudpacs_dicom_associations 2\n"));
    response_free(&r);
}

static void test_bad_requests(void **state)
{
    response r;

    (void)state;
    exchange(open_srv, "GET /json?x=%00 HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    assert_int_equal(r.status, 400);
    response_free(&r);
    exchange(open_srv, "BREW /json HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    assert_int_equal(r.status, 501);
    response_free(&r);
    exchange(open_srv, "GET /json HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", &r);
    assert_int_equal(r.status, 400);
    response_free(&r);
}

static void stow(const char *content_type, const char *body, response *r)
{
    cp_buf req = CP_BUF_INIT;

    cp_buf_appendf(&req, "POST /dicom-web/studies HTTP/1.1\r\nHost: x\r\n"
                   "Content-Type: %s\r\nContent-Length: %zu\r\n\r\n%s", content_type,
                   strlen(body), body);
    exchange(open_srv, (char *)req.data, r);
    cp_buf_free(&req);
}

/* Hostile multipart bodies are answered with 400/415; the server stays up. */
static void test_hostile_multipart(void **state)
{
    const char *good = "--b\r\nContent-Type: application/dicom\r\n\r\nDICM\r\n"
                       "--b\r\nContent-Type: application/dicom\r\n\r\nDICM\r\n--b--\r\n";
    response r;

    (void)state;
    stow("multipart/related; type=\"application/dicom\"; boundary=b", good, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal((char *)r.body.data, "{\"parts\": 2}");
    response_free(&r);

    stow("multipart/related; type=\"application/dicom\"; boundary=b",
         "--b\r\nContent-Type: application/dicom\r\n\r\nDI", &r);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr((char *)r.body.data, "declared length"));
    response_free(&r);

    stow("multipart/related; boundary=wrong", good, &r);
    assert_int_equal(r.status, 400);
    response_free(&r);

    stow("application/dicom", good, &r);
    assert_int_equal(r.status, 415);
    response_free(&r);

    stow("multipart/related; boundary=\"\"", good, &r);
    assert_int_equal(r.status, 415);
    response_free(&r);

    /* Part headers past the reader's limit: refused from within the body. */
    {
        cp_buf big = CP_BUF_INIT;

        cp_buf_append_str(&big, "--b\r\nX-Junk: ");
        for (unsigned i = 0; i < HTTP_MULTIPART_HEADER_BYTES_MAX; i++)
            cp_buf_append_byte(&big, 'j');
        cp_buf_append_str(&big, "\r\n\r\nx\r\n--b--");
        stow("multipart/related; boundary=b", (char *)big.data, &r);
        assert_int_equal(r.status, 413);
        response_free(&r);
        cp_buf_free(&big);
    }

    exchange(open_srv, "GET /json HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    response_free(&r);
}

/*
 * HTTPS through libmicrohttpd's GnuTLS, checked with the openssl command
 * line client when it is installed (skipped otherwise): a self-signed
 * certificate, one request, and the base URL seen as https.
 */
static cp_status base_handler(http_request *req, void *ctx)
{
    char url[256];

    (void)ctx;
    if (http_request_base_url(req, url, sizeof(url)) != CP_OK)
        return CP_ERR_LIMIT;
    return http_respond_buffer(req, 200, "text/plain", url, strlen(url));
}

static void test_tls(void **state)
{
    char dir[] = "/tmp/test_http_tls_XXXXXX", cmd[1024], cert[64], key[64], out[4096];
    http_config cfg = { .threads = 1, .tls_cert_path = cert, .tls_key_path = key };
    http_server *s = NULL;
    cp_error err;
    FILE *p;
    size_t n;

    (void)state;
    if (system("command -v openssl >/dev/null 2>&1") != 0)
        skip();
    assert_non_null(mkdtemp(dir));
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    snprintf(cmd, sizeof(cmd), "openssl req -x509 -newkey rsa:2048 -nodes -keyout %s -out %s "
             "-days 1 -subj /CN=localhost >/dev/null 2>&1", key, cert);
    assert_int_equal(system(cmd), 0);

    cp_error_clear(&err);
    assert_int_equal(http_server_create(&cfg, &s, &err), CP_OK);
    assert_int_equal(http_server_route(s, HTTP_GET, "/base", 0, base_handler, NULL), CP_OK);
    assert_int_equal(http_server_start(s, &err), CP_OK);
    snprintf(cmd, sizeof(cmd), "printf 'GET /base HTTP/1.1\\r\\nHost: pacs.test\\r\\n"
             "Connection: close\\r\\n\\r\\n' | timeout 10 openssl s_client -quiet "
             "-connect 127.0.0.1:%u 2>/dev/null", (unsigned)http_server_port(s));
    p = popen(cmd, "r");
    assert_non_null(p);
    n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = 0;
    pclose(p);
    assert_non_null(strstr(out, "HTTP/1.1 200"));
    assert_non_null(strstr(out, "https://pacs.test"));
    http_server_destroy(s);

    /* A missing key file fails at creation, not at the first request. */
    unlink(key);
    assert_int_equal(http_server_create(&cfg, &s, &err), CP_ERR_CONFIG);
    unlink(cert);
    rmdir(dir);
}

/* --- server-sent events ---------------------------------------------------------- */

#define EV_CLIENTS 20

typedef struct ev_hub {
    pthread_mutex_t lock;
    http_events *streams[EV_CLIENTS];
    size_t count;
    int closed;
} ev_hub;

static ev_hub hub = { PTHREAD_MUTEX_INITIALIZER, { NULL }, 0, 0 };

static void ev_closed(void *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&hub.lock);
    hub.closed++;
    pthread_mutex_unlock(&hub.lock);
}

static cp_status events_handler(http_request *req, void *ctx)
{
    http_events *ev;
    unsigned long n;
    cp_status st;

    (void)ctx;
    st = http_respond_events(req, &ev);
    if (st != CP_OK)
        return st;
    http_events_on_close(ev, ev_closed, NULL);
    /* ?c=N: the client's number, so that stream N is client N's. */
    n = strtoul(http_request_query(req, "c") ? http_request_query(req, "c") : "99", NULL, 10);
    pthread_mutex_lock(&hub.lock);
    if (n < EV_CLIENTS && !hub.streams[n]) {
        hub.streams[n] = ev;
        hub.count++;
    } else {
        http_events_release(ev);
    }
    pthread_mutex_unlock(&hub.lock);
    return CP_OK;
}

static size_t hub_count(void)
{
    size_t n;

    pthread_mutex_lock(&hub.lock);
    n = hub.count;
    pthread_mutex_unlock(&hub.lock);
    return n;
}

static int hub_closed(void)
{
    int n;

    pthread_mutex_lock(&hub.lock);
    n = hub.closed;
    pthread_mutex_unlock(&hub.lock);
    return n;
}

static bool wait_for(bool (*cond)(int), int want, int ms)
{
    for (int waited = 0; waited < ms; waited += 10) {
        if (cond(want))
            return true;
        usleep(10 * 1000);
    }
    return cond(want);
}

static bool count_reached(int want)
{
    return hub_count() >= (size_t)want;
}

static bool closed_reached(int want)
{
    return hub_closed() >= want;
}

/* Reads de-chunked stream bytes into text until it holds needle; false at the end. */
static bool read_stream_until(reader *r, cp_buf *text, const char *needle)
{
    cp_buf line = CP_BUF_INIT;
    bool found;

    cp_buf_append_byte(text, 0);
    text->len--;
    found = strstr((char *)text->data, needle) != NULL;
    while (!found) {
        size_t size;

        if (!rd_line(r, &line))
            break;
        size = strtoul(line.len ? (char *)line.data : "0", NULL, 16);
        if (size == 0)
            break;
        for (size_t i = 0; i < size; i++)
            cp_buf_append_byte(text, (uint8_t)rd_byte(r));
        rd_line(r, &line);
        cp_buf_append_byte(text, 0);
        text->len--;
        found = strstr((char *)text->data, needle) != NULL;
    }
    cp_buf_free(&line);
    return found;
}

/*
 * Twenty streams stay open on a four-thread pool while ordinary requests
 * are served; events reach every stream, multi-line data is split into
 * data lines, a client that does not read is dropped once its queue is
 * full, a client that hangs up is noticed by the keep-alive comments, and
 * stopping the server ends the streams that are left.
 */
static void test_events(void **state)
{
    http_config cfg = { .port = 0, .threads = 4, .events_keepalive_ms = 200 };
    http_server *srv;
    reader *clients[EV_CLIENTS];
    cp_buf text = CP_BUF_INIT;
    response resp;
    char request[128], big[1024];
    cp_status st = CP_OK;
    int sent = 0;

    (void)state;
    assert_int_equal(http_server_create(&cfg, &srv, NULL), CP_OK);
    assert_int_equal(http_server_route(srv, HTTP_GET, "/events", 0, events_handler, NULL),
                     CP_OK);
    assert_int_equal(http_server_route(srv, HTTP_GET, "/json", 0, json_handler, NULL), CP_OK);
    assert_int_equal(http_server_start(srv, NULL), CP_OK);

    for (int i = 0; i < EV_CLIENTS; i++) {
        snprintf(request, sizeof(request), "GET /events?c=%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
        clients[i] = cp_calloc(1, sizeof(reader));
        clients[i]->fd = dial(http_server_port(srv));
        send_all(clients[i]->fd, request, strlen(request));
    }
    for (int i = 0; i < EV_CLIENTS; i++) {
        cp_buf line = CP_BUF_INIT;
        bool type_ok = false;

        assert_true(rd_line(clients[i], &line));
        assert_non_null(strstr((char *)line.data, " 200"));
        while (rd_line(clients[i], &line) && line.len > 0) {
            cp_buf_append_byte(&line, 0);
            type_ok = type_ok || strcasecmp((char *)line.data,
                                            "Content-Type: text/event-stream") == 0;
        }
        assert_true(type_ok);
        cp_buf_reset(&text);
        assert_true(read_stream_until(clients[i], &text, "retry: 3000\n\n"));
        cp_buf_free(&line);
    }
    assert_true(wait_for(count_reached, EV_CLIENTS, 2000));

    /* The streams are suspended: the pool still serves everyone else. */
    for (int i = 0; i < 30; i++) {
        exchange(srv, "GET /json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &resp);
        assert_int_equal(resp.status, 200);
        response_free(&resp);
    }

    for (int i = 0; i < EV_CLIENTS; i++)
        assert_int_equal(http_events_send(hub.streams[i], "status", "{\"n\":7}", "41"), CP_OK);
    assert_int_equal(http_events_send(hub.streams[2], NULL, "one\ntwo", NULL), CP_OK);
    for (int i = 0; i < EV_CLIENTS; i++) {
        cp_buf_reset(&text);
        assert_true(read_stream_until(clients[i], &text,
                                      "id: 41\nevent: status\ndata: {\"n\":7}\n\n"));
        /* The second event may have come in the same read: text keeps it. */
        if (i == 2)
            assert_true(read_stream_until(clients[2], &text, "data: one\ndata: two\n\n"));
    }

    /* Client 0 reads nothing: its queue fills and it is dropped. */
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    while (st == CP_OK && sent < 100000) {
        st = http_events_send(hub.streams[0], "bulk", big, NULL);
        sent++;
    }
    assert_int_equal(st, CP_ERR_LIMIT);
    assert_true(wait_for(closed_reached, 1, 3000));
    assert_false(http_events_open(hub.streams[0]));
    assert_int_equal(http_events_send(hub.streams[0], "late", "x", NULL), CP_ERR_STOPPED);

    /* Client 1 hangs up: the keep-alive comment finds out. */
    close(clients[1]->fd);
    clients[1]->fd = -1;
    assert_true(wait_for(closed_reached, 2, 5000));

    /* The owner lets go of client 3: its stream ends cleanly. */
    http_events_release(hub.streams[3]);
    hub.streams[3] = NULL;
    cp_buf_reset(&text);
    assert_false(read_stream_until(clients[3], &text, "never sent"));

    /* Stopping the server ends every other stream, suspended or not. */
    http_server_stop(srv, 500);
    assert_int_equal(hub_closed(), EV_CLIENTS - 1);
    for (size_t i = 0; i < EV_CLIENTS; i++)
        http_events_release(hub.streams[i]);
    for (int i = 0; i < EV_CLIENTS; i++) {
        if (clients[i]->fd >= 0)
            close(clients[i]->fd);
        cp_free(clients[i]);
    }
    cp_buf_free(&text);
    http_server_destroy(srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routing),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_streamed_upload),
        cmocka_unit_test(test_fd_and_stream),
        cmocka_unit_test(test_gzip),
        cmocka_unit_test(test_cors),
        cmocka_unit_test(test_auth),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_hostile_multipart),
        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_events),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}

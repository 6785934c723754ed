/*
 * api_film_file.c - a cloud film instance as application/dicom (see
 * api_film_file.h).
 *
 * film_deident_file pushes its output into a sink while the HTTP server
 * pulls a response body from a producer. A thread runs the de-identifier
 * into one end of a socket pair (send with MSG_NOSIGNAL: a client that
 * leaves must not raise SIGPIPE) and the producer reads the other end, so
 * that what is in flight is bounded by the socket's buffer. The thread's
 * status is taken when the stream ends: a failure cuts the connection
 * instead of ending a chunked body that looks complete. When the client
 * goes first, closing the reading end makes the thread's next send fail,
 * and the thread is joined before anything it uses is freed.
 */
#include "api/api_film_file.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/api_internal.h"
#include "core/alloc.h"
#include "core/log.h"

typedef struct film_stream {
    film_deident *d;
    store_reader *rd;
    char path[40];              /* /proc/self/fd/N of the stored blob */
    int rfd;                    /* the producer's end */
    int wfd;                    /* the thread's end; closed by the thread */
    pthread_t thread;
    bool started, joined;
    cp_status status;           /* the thread's, read after the join */
    cp_error err;
} film_stream;

static cp_status send_all(void *ctx, const void *data, size_t len)
{
    film_stream *s = ctx;
    const uint8_t *p = data;

    while (len > 0) {
        ssize_t n = send(s->wfd, p, len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return CP_ERR_IO;
        p += n;
        len -= (size_t)n;
    }
    return CP_OK;
}

static void *run_deident(void *arg)
{
    film_stream *s = arg;
    dcm_sink sink = { send_all, s };

    cp_error_clear(&s->err);
    s->status = film_deident_file(s->d, s->path, &sink, &s->err);
    /* The end of the body for the producer. */
    close(s->wfd);
    s->wfd = -1;
    return NULL;
}

static void stream_join(film_stream *s)
{
    if (s->started && !s->joined) {
        pthread_join(s->thread, NULL);
        s->joined = true;
        if (s->status != CP_OK && s->status != CP_ERR_IO)
            cp_log_warn("api.film_file", "status=%s detail=\"%s\"",
                        cp_status_name(s->status), s->err.detail);
    }
}

static ssize_t stream_produce(void *ctx, uint64_t pos, uint8_t *buf, size_t max)
{
    film_stream *s = ctx;

    (void)pos;
    for (;;) {
        ssize_t n = read(s->rfd, buf, max);

        if (n > 0)
            return n;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return HTTP_STREAM_ERROR;
        stream_join(s);
        return s->status == CP_OK ? HTTP_STREAM_END : HTTP_STREAM_ERROR;
    }
}

static void stream_free(void *ctx)
{
    film_stream *s = ctx;

    if (s == NULL)
        return;
    if (s->rfd >= 0)
        close(s->rfd);
    stream_join(s);
    if (s->wfd >= 0)
        close(s->wfd);
    store_close(s->rd);
    film_deident_close(s->d);
    cp_free(s);
}

static cp_status attachment_headers(http_request *req, const char *filename)
{
    char disposition[160];

    snprintf(disposition, sizeof disposition, "attachment; filename=\"%.120s.dcm\"", filename);
    if (http_response_header(req, "Cache-Control", "no-store") != CP_OK ||
        http_response_header(req, "Content-Disposition", disposition) != CP_OK)
        return CP_ERR_NOMEM;
    return CP_OK;
}

cp_status api_film_file_respond(http_request *req, store *st, const char *blob_key,
                                const char *filename, film_deident *d)
{
    film_stream *s;
    int pair[2];
    int fd;

    s = cp_calloc(1, sizeof *s);
    if (s == NULL) {
        film_deident_close(d);
        return http_respond_error(req, 503, "out of memory");
    }
    s->d = d;
    s->rfd = s->wfd = -1;
    if (st == NULL || store_open(st, blob_key, &s->rd, NULL) != CP_OK ||
        (fd = store_reader_fd(s->rd)) < 0) {
        stream_free(s);
        return http_respond_error(req, 404, "no such instance");
    }
    if (d == NULL) {
        uint64_t size = store_reader_size(s->rd);
        int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);

        stream_free(s);
        if (attachment_headers(req, filename) != CP_OK) {
            if (copy >= 0)
                close(copy);
            return http_respond_error(req, 503, "out of memory");
        }
        return http_respond_fd(req, 200, "application/dicom", copy, 0, size);
    }

    snprintf(s->path, sizeof s->path, "/proc/self/fd/%d", fd);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
        stream_free(s);
        return http_respond_error(req, 503, "no socket for the stream");
    }
    s->rfd = pair[0];
    s->wfd = pair[1];
    if (pthread_create(&s->thread, NULL, run_deident, s) != 0) {
        stream_free(s);
        return http_respond_error(req, 503, "no thread for the stream");
    }
    s->started = true;
    if (attachment_headers(req, filename) != CP_OK) {
        stream_free(s);
        return http_respond_error(req, 503, "out of memory");
    }
    return http_respond_stream(req, 200, "application/dicom", -1, stream_produce, s,
                               stream_free);
}

void api_set_film_store(api_service *a, store *st)
{
    a->film_store = st;
}

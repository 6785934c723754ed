/*
 * redisd.c - the embedded default's own redis-server: configured, started,
 * watched, restarted and stopped by cloudpacs (no standard involved; the
 * server speaks RESP2 on a Unix socket and persists with its append-only
 * file).
 *
 * Every child is forked by the watcher thread, which lives as long as the
 * redisd: the child asks the kernel for SIGTERM when the thread that forked
 * it goes (PR_SET_PDEATHSIG), so a cloudpacs that is killed takes its Redis
 * with it. The watcher reaps a child only while holding the lock, after
 * seeing it exit with WNOWAIT, so that a signal sent under the lock always
 * reaches our own child and never a process that reused its id.
 */
#include "kv/redisd.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <hiredis/hiredis.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/limits.h"
#include "core/log.h"

enum {
    POLL_INTERVAL_MS = 20,          /* between two PINGs while starting */
    PING_TIMEOUT_MS = 250,          /* connect and answer of one such PING */
    LOG_TAIL_BYTES = 160,           /* of redis.log quoted in an error */
};

struct redisd {
    char *dir;                      /* <data_dir>/redis */
    char *conf;
    char *log;
    char *sock;
    char *url;
    char *server;
    unsigned start_timeout_ms;

    pthread_mutex_t lock;
    pthread_cond_t changed;
    pthread_t watcher;
    bool watcher_running;

    /* Under lock. */
    bool stopping;
    bool starting;                  /* the first child has not answered yet */
    bool spawned;                   /* the watcher tried the first fork */
    int spawn_errno;
    bool first_died;
    int first_status;
    bool watcher_done;

    atomic_int pid;                 /* 0: no child now */
    atomic_uint restarts;
};

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* Waits on r->changed until woken or until the monotonic time `until`. */
static void wait_until(redisd *r, uint64_t until)
{
    struct timespec ts;
    uint64_t now = now_ms();

    if (now >= until)
        return;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)((until - now) / 1000);
    ts.tv_nsec += (long)((until - now) % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&r->changed, &r->lock, &ts);
}

/* A one-word command with SIGPIPE blocked (and consumed) in this thread. */
static redisReply *command_nopipe(redisContext *c, const char *cmd)
{
    const char *argv[1] = { cmd };
    sigset_t set;
    sigset_t old;
    sigset_t pending;
    struct timespec zero = { 0, 0 };
    bool was_pending;
    redisReply *reply;

    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    sigemptyset(&pending);
    sigpending(&pending);
    was_pending = sigismember(&pending, SIGPIPE) == 1;

    reply = redisCommandArgv(c, 1, argv, NULL);

    sigemptyset(&pending);
    sigpending(&pending);
    if (!was_pending && sigismember(&pending, SIGPIPE) == 1)
        while (sigtimedwait(&set, NULL, &zero) == -1 && errno == EINTR) {
        }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return reply;
}

static redisContext *connect_sock(const char *sock, unsigned timeout_ms)
{
    struct timeval tv = { .tv_sec = timeout_ms / 1000,
                          .tv_usec = (timeout_ms % 1000) * 1000 };
    redisContext *c = redisConnectUnixWithTimeout(sock, tv);

    if (c != NULL && (c->err != 0 || redisSetTimeout(c, tv) != REDIS_OK)) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* Whether a server answers PONG on sock now. */
static bool ping_once(const char *sock)
{
    redisContext *c = connect_sock(sock, PING_TIMEOUT_MS);
    redisReply *reply;
    bool ok;

    if (c == NULL)
        return false;
    reply = command_nopipe(c, "PING");
    ok = reply != NULL && reply->type == REDIS_REPLY_STATUS && reply->len == 4
         && memcmp(reply->str, "PONG", 4) == 0;
    if (reply != NULL)
        freeReplyObject(reply);
    redisFree(c);
    return ok;
}

/*
 * Asks the server to shut down. True when it took the request (it closes
 * the connection without answering); false when it could not be reached
 * or refused.
 */
static bool send_shutdown(const char *sock)
{
    redisContext *c = connect_sock(sock, REDISD_STOP_TIMEOUT_MS);
    redisReply *reply;
    bool taken;

    if (c == NULL)
        return false;
    reply = command_nopipe(c, "SHUTDOWN");
    taken = reply == NULL && c->err == REDIS_ERR_EOF;
    if (reply != NULL)
        freeReplyObject(reply);
    redisFree(c);
    return taken;
}

/* --- files ------------------------------------------------------------------ */

/* The first executable of cfg->server_path, PATH, /usr/bin, /usr/local/bin. */
static cp_status find_server(const char *configured, char **out, cp_error *err)
{
    static const char *const fallback[] = {
        "/usr/bin/redis-server", "/usr/local/bin/redis-server",
    };
    const char *path = getenv("PATH");
    cp_buf b;

    if (configured != NULL && configured[0] != '\0') {
        if (access(configured, X_OK) != 0)
            return cp_error_set(err, CP_ERR_NOT_FOUND, CP_ERROR_NO_OFFSET,
                                CP_ERROR_NO_TAG, "redis-server %s: %s", configured,
                                strerror(errno));
        *out = cp_strdup(configured);
        goto done;
    }

    cp_buf_init(&b);
    while (path != NULL && *path != '\0') {
        size_t n = strcspn(path, ":");

        if (n > 0 && path[0] == '/') {
            cp_buf_reset(&b);
            if (cp_buf_append(&b, path, n) != CP_OK
                || cp_buf_append_str(&b, "/redis-server") != CP_OK) {
                cp_buf_free(&b);
                return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET,
                                    CP_ERROR_NO_TAG, "out of memory");
            }
            if (access((const char *)b.data, X_OK) == 0) {
                *out = (char *)cp_buf_steal(&b, NULL);
                goto done;
            }
        }
        path += n + (path[n] == ':');
    }
    cp_buf_free(&b);

    for (size_t i = 0; i < sizeof(fallback) / sizeof(fallback[0]); i++) {
        if (access(fallback[i], X_OK) == 0) {
            *out = cp_strdup(fallback[i]);
            goto done;
        }
    }
    return cp_error_set(err, CP_ERR_NOT_FOUND, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                        "no redis-server in PATH, /usr/bin or /usr/local/bin");

done:
    if (*out == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "out of memory");
    return CP_OK;
}

static cp_status make_dir(const char *path, cp_error *err)
{
    struct stat st;

    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "mkdir %s: %s", path, strerror(errno));
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "%s is not a directory", path);
    return CP_OK;
}

/*
 * The socket path: in the redis directory when it fits a sockaddr_un,
 * otherwise in /tmp under a name derived from the directory's real path,
 * so that one data directory always gets the same socket.
 */
static cp_status choose_socket(redisd *r, cp_error *err)
{
    struct sockaddr_un sa;
    unsigned char hash[32];
    char hex[17];
    char *real;
    size_t n = strlen(r->dir) + sizeof("/redis.sock");
    int rc;

    r->sock = cp_malloc(n);
    if (r->sock == NULL)
        goto nomem;
    snprintf(r->sock, n, "%s/redis.sock", r->dir);
    if (strlen(r->sock) < sizeof(sa.sun_path))
        return CP_OK;
    cp_free(r->sock);

    real = realpath(r->dir, NULL);
    rc = gnutls_hash_fast(GNUTLS_DIG_SHA256, real != NULL ? real : r->dir,
                          strlen(real != NULL ? real : r->dir), hash);
    free(real);
    if (rc < 0)
        return cp_error_set(err, CP_ERR_UNSUPPORTED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "SHA-256 unavailable to name the redis socket");
    for (size_t i = 0; i < 8; i++)
        snprintf(hex + 2 * i, 3, "%02x", hash[i]);

    n = sizeof("/tmp/cloudpacs-redis--.sock") + 20 + 16;
    r->sock = cp_malloc(n);
    if (r->sock == NULL)
        goto nomem;
    snprintf(r->sock, n, "/tmp/cloudpacs-redis-%u-%s.sock", (unsigned)getuid(), hex);
    return CP_OK;

nomem:
    return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                        "out of memory");
}

/* Appends s as a double-quoted redis.conf string. */
static cp_status append_quoted(cp_buf *b, const char *s)
{
    cp_status st = cp_buf_append_byte(b, '"');

    for (; st == CP_OK && *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\')
            st = cp_buf_appendf(b, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            st = cp_buf_appendf(b, "\\x%02x", c);
        else
            st = cp_buf_append_byte(b, c);
    }
    if (st == CP_OK)
        st = cp_buf_append_byte(b, '"');
    return st;
}

static cp_status conf_text(const redisd *r, cp_buf *b)
{
    cp_status st = cp_buf_append_str(b,
        "# Written by cloudpacs on every start; edits are lost.\n"
        "port 0\n"
        "unixsocketperm 700\n"
        "daemonize no\n"
        "supervised no\n"
        "protected-mode yes\n"
        "appendonly yes\n"
        "appendfsync everysec\n"
        "save \"\"\n");

    if (st == CP_OK)
        st = cp_buf_append_str(b, "unixsocket ");
    if (st == CP_OK)
        st = append_quoted(b, r->sock);
    if (st == CP_OK)
        st = cp_buf_append_str(b, "\ndir ");
    if (st == CP_OK)
        st = append_quoted(b, r->dir);
    if (st == CP_OK)
        st = cp_buf_append_str(b, "\nlogfile ");
    if (st == CP_OK)
        st = append_quoted(b, r->log);
    if (st == CP_OK)
        st = cp_buf_append_byte(b, '\n');
    return st;
}

/* Writes redis.conf through a temporary file, so a reader never sees half. */
static cp_status write_conf(const redisd *r, cp_error *err)
{
    cp_buf b;
    char *tmp = NULL;
    size_t n = strlen(r->conf) + sizeof(".tmp");
    size_t off = 0;
    int fd = -1;
    cp_status st;

    cp_buf_init(&b);
    tmp = cp_malloc(n);
    if (tmp == NULL || conf_text(r, &b) != CP_OK) {
        st = cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "out of memory");
        goto done;
    }
    snprintf(tmp, n, "%s.tmp", r->conf);

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        goto io;
    while (off < b.len) {
        ssize_t w = write(fd, b.data + off, b.len - off);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            goto io;
        off += (size_t)w;
    }
    if (close(fd) != 0) {
        fd = -1;
        goto io;
    }
    fd = -1;
    if (rename(tmp, r->conf) != 0)
        goto io;
    st = CP_OK;
    goto done;

io:
    st = cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                      "writing %s: %s", r->conf, strerror(errno));
    if (fd >= 0)
        close(fd);
    unlink(tmp);
done:
    cp_free(tmp);
    cp_buf_free(&b);
    return st;
}

/* The last bytes of redis.log on one line, into out. */
static void log_tail(const redisd *r, char *out, size_t cap)
{
    char buf[LOG_TAIL_BYTES + 1];
    ssize_t got = 0;
    struct stat st;
    size_t start = 0;
    int fd = open(r->log, O_RDONLY | O_CLOEXEC);

    out[0] = '\0';
    if (fd < 0)
        return;
    if (fstat(fd, &st) == 0) {
        off_t from = st.st_size > LOG_TAIL_BYTES ? st.st_size - LOG_TAIL_BYTES : 0;

        got = pread(fd, buf, LOG_TAIL_BYTES, from);
    }
    close(fd);
    if (got <= 0)
        return;

    while (got > 0 && (buf[got - 1] == '\n' || buf[got - 1] == ' '))
        got--;
    for (ssize_t i = 0; i < got; i++) {
        unsigned char c = (unsigned char)buf[i];

        if (c == '\n')
            buf[i] = '|';
        else if (c < 0x20 || c >= 0x7f)
            buf[i] = ' ';
    }
    buf[got] = '\0';
    while (buf[start] == '|' || buf[start] == ' ')
        start++;
    snprintf(out, cap, "%s", buf + start);
}

/* --- the child ------------------------------------------------------------ */

/*
 * In the forked child: only async-signal-safe calls until exec. The server
 * gets the redis.log as stdout and stderr (a bad configuration is reported
 * there before the log file is opened), /dev/null as stdin, no other fd.
 */
static void child_exec(const char *server, char *const argv[], int null_fd, int log_fd,
                       pid_t parent, int fd_max)
{
    sigset_t none;

#ifdef __linux__
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent)
        _exit(126);
#else
    (void)parent;
#endif
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (dup2(null_fd, 0) < 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0)
        _exit(126);
    if (close_range(3, ~0u, 0) != 0)
        for (int fd = 3; fd < fd_max; fd++)
            close(fd);
    execv(server, argv);
    _exit(127);
}

/* Forks a server; called with the lock held. Returns the pid or -errno. */
static pid_t spawn_child(redisd *r)
{
    char *argv[] = { r->server, r->conf, NULL };
    long open_max = sysconf(_SC_OPEN_MAX);
    int fd_max = open_max > 0 && open_max < 65536 ? (int)open_max : 65536;
    pid_t parent = getpid();
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int log_fd = open(r->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    pid_t pid = -1;
    int saved;

    if (null_fd >= 0 && log_fd >= 0)
        pid = fork();
    if (pid == 0)
        child_exec(r->server, argv, null_fd, log_fd, parent, fd_max);
    saved = errno;
    if (null_fd >= 0)
        close(null_fd);
    if (log_fd >= 0)
        close(log_fd);
    return pid > 0 ? pid : -saved;
}

/* --- the watcher ------------------------------------------------------------ */

/* Blocks until pid exits, without reaping it. */
static void wait_exit(pid_t pid)
{
    siginfo_t info;

    while (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT) != 0 && errno == EINTR) {
    }
}

static void describe_status(int status, char *out, size_t cap)
{
    if (WIFEXITED(status))
        snprintf(out, cap, "exit:%d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, cap, "signal:%d", WTERMSIG(status));
    else
        snprintf(out, cap, "unknown");
}

/*
 * Waits `delay` ms, then forks a new server, doubling the wait after each
 * failed fork. Lock held. Returns the new pid, or 0 when stopping.
 */
static pid_t restart_after(redisd *r, unsigned *delay)
{
    for (;;) {
        uint64_t until = now_ms() + *delay;
        pid_t pid;

        while (!r->stopping && now_ms() < until)
            wait_until(r, until);
        if (r->stopping)
            return 0;

        pid = spawn_child(r);
        if (pid > 0)
            return pid;
        *delay = *delay * 2 > REDISD_RESTART_MAX_MS ? REDISD_RESTART_MAX_MS : *delay * 2;
        cp_log_warn("redisd.restart_failed", "errno=%d retry_ms=%u", -pid, *delay);
    }
}

static void *watcher_main(void *arg)
{
    redisd *r = arg;
    unsigned delay = REDISD_RESTART_MIN_MS;
    uint64_t started;
    pid_t pid;

    pthread_mutex_lock(&r->lock);
    pid = spawn_child(r);
    r->spawned = true;
    if (pid < 0) {
        r->spawn_errno = -pid;
        goto done;
    }
    atomic_store(&r->pid, pid);
    started = now_ms();
    pthread_cond_broadcast(&r->changed);

    for (;;) {
        char how[32];
        int status = 0;
        pid_t next;

        pthread_mutex_unlock(&r->lock);
        wait_exit(pid);
        pthread_mutex_lock(&r->lock);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        atomic_store(&r->pid, 0);
        if (r->starting) {
            r->first_died = true;
            r->first_status = status;
        }
        if (r->starting || r->stopping)
            break;

        if (now_ms() - started >= REDISD_RESTART_MAX_MS)
            delay = REDISD_RESTART_MIN_MS;
        next = restart_after(r, &delay);
        if (next == 0)
            break;
        describe_status(status, how, sizeof(how));
        cp_log_warn("redisd.restart", "pid=%d status=%s new_pid=%d restarts=%u",
                    (int)pid, how, (int)next, atomic_load(&r->restarts) + 1);
        atomic_store(&r->pid, next);
        atomic_fetch_add(&r->restarts, 1u);
        started = now_ms();
        pid = next;
        delay = delay * 2 > REDISD_RESTART_MAX_MS ? REDISD_RESTART_MAX_MS : delay * 2;
        pthread_cond_broadcast(&r->changed);
    }

done:
    r->watcher_done = true;
    pthread_cond_broadcast(&r->changed);
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* Waits up to ms for the watcher to finish; true when it did. */
static bool wait_watcher(redisd *r, unsigned ms)
{
    uint64_t until = now_ms() + ms;
    bool done;

    pthread_mutex_lock(&r->lock);
    while (!r->watcher_done && now_ms() < until)
        wait_until(r, until);
    done = r->watcher_done;
    pthread_mutex_unlock(&r->lock);
    return done;
}

static void signal_child(redisd *r, int sig)
{
    pthread_mutex_lock(&r->lock);
    if (atomic_load(&r->pid) > 0)
        kill(atomic_load(&r->pid), sig);
    pthread_mutex_unlock(&r->lock);
}

/* Ends the watcher and its child, whatever it takes, and joins it. */
static void halt(redisd *r, bool polite)
{
    bool asked = false;
    int pid;

    if (!r->watcher_running)
        return;
    pthread_mutex_lock(&r->lock);
    r->stopping = true;
    pid = atomic_load(&r->pid);
    pthread_cond_broadcast(&r->changed);
    pthread_mutex_unlock(&r->lock);

    if (polite && pid > 0)
        asked = send_shutdown(r->sock);
    if (!asked || !wait_watcher(r, REDISD_STOP_TIMEOUT_MS)) {
        if (polite) {
            signal_child(r, SIGTERM);
            if (wait_watcher(r, REDISD_STOP_TIMEOUT_MS))
                goto join;
        }
        signal_child(r, SIGKILL);
        while (!wait_watcher(r, REDISD_STOP_TIMEOUT_MS))
            signal_child(r, SIGKILL);
    }

join:
    pthread_join(r->watcher, NULL);
    r->watcher_running = false;
}

/* --- public --------------------------------------------------------------- */

static void free_redisd(redisd *r)
{
    if (r == NULL)
        return;
    cp_free(r->dir);
    cp_free(r->conf);
    cp_free(r->log);
    cp_free(r->sock);
    cp_free(r->url);
    cp_free(r->server);
    cp_free(r);
}

static char *join_path(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = cp_malloc(n);

    if (p != NULL)
        snprintf(p, n, "%s/%s", a, b);
    return p;
}

/* Paths, directory, socket and configuration; nothing started yet. */
static cp_status prepare(const redisd_config *cfg, redisd *r, cp_error *err)
{
    size_t n;
    cp_status st;

    st = find_server(cfg->server_path, &r->server, err);
    if (st != CP_OK)
        return st;

    r->dir = join_path(cfg->data_dir, "redis");
    if (r->dir == NULL)
        goto nomem;
    r->conf = join_path(r->dir, "redis.conf");
    r->log = join_path(r->dir, "redis.log");
    if (r->conf == NULL || r->log == NULL)
        goto nomem;
    st = make_dir(cfg->data_dir, err);
    if (st == CP_OK)
        st = make_dir(r->dir, err);
    if (st != CP_OK)
        return st;
    if (chmod(r->dir, 0700) != 0)
        return cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "chmod %s: %s", r->dir, strerror(errno));

    st = choose_socket(r, err);
    if (st != CP_OK)
        return st;
    n = strlen(r->sock) + sizeof("unix://");
    r->url = cp_malloc(n);
    if (r->url == NULL)
        goto nomem;
    snprintf(r->url, n, "unix://%s", r->sock);

    /*
     * A server that still answers may be the previous one, shutting down
     * after its cloudpacs was killed; it gets the stop timeout to go.
     */
    for (uint64_t until = now_ms() + REDISD_STOP_TIMEOUT_MS; ping_once(r->sock);) {
        if (now_ms() >= until)
            return cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                                "a Redis already answers on %s (another cloudpacs on "
                                "this data directory?)", r->sock);
        sleep_ms(POLL_INTERVAL_MS * 5);
    }
    return write_conf(r, err);

nomem:
    return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                        "out of memory");
}

/* Polls PING until the first child answers, dies, or the time is up. */
static cp_status await_ready(redisd *r, cp_error *err)
{
    uint64_t deadline = now_ms() + r->start_timeout_ms;
    char tail[LOG_TAIL_BYTES + 1];
    char how[32];
    bool died;
    bool ready = false;

    for (;;) {
        pthread_mutex_lock(&r->lock);
        died = r->first_died;
        pthread_mutex_unlock(&r->lock);
        if (died || now_ms() >= deadline)
            break;
        if (ping_once(r->sock)) {
            pthread_mutex_lock(&r->lock);
            died = r->first_died;
            ready = !died;
            r->starting = false;
            pthread_mutex_unlock(&r->lock);
            break;
        }
        sleep_ms(POLL_INTERVAL_MS);
    }
    if (ready)
        return CP_OK;

    halt(r, false);
    log_tail(r, tail, sizeof(tail));
    if (died) {
        describe_status(r->first_status, how, sizeof(how));
        return cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "redis-server ended (%s) while starting; log: %s", how,
                            tail);
    }
    return cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                        "redis-server did not answer within %u ms; log: %s",
                        r->start_timeout_ms, tail);
}

cp_status redisd_start(const redisd_config *cfg, redisd **out, cp_error *err)
{
    pthread_condattr_t attr;
    redisd *r;
    cp_status st;
    int rc;

    *out = NULL;
    if (cfg == NULL || cfg->data_dir == NULL || cfg->data_dir[0] == '\0')
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "redisd: no data directory");
    r = cp_calloc(1, sizeof(*r));
    if (r == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "out of memory");
    r->start_timeout_ms = cfg->start_timeout_ms != 0 ? cfg->start_timeout_ms
                                                     : REDISD_START_TIMEOUT_MS;
    pthread_mutex_init(&r->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&r->changed, &attr);
    pthread_condattr_destroy(&attr);
    atomic_init(&r->pid, 0);
    atomic_init(&r->restarts, 0u);

    st = prepare(cfg, r, err);
    if (st != CP_OK)
        goto fail;

    r->starting = true;
    rc = pthread_create(&r->watcher, NULL, watcher_main, r);
    if (rc != 0) {
        st = cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "redisd: cannot start the watcher thread: %s", strerror(rc));
        goto fail;
    }
    r->watcher_running = true;

    pthread_mutex_lock(&r->lock);
    while (!r->spawned)
        pthread_cond_wait(&r->changed, &r->lock);
    rc = r->spawn_errno;
    pthread_mutex_unlock(&r->lock);
    if (rc != 0) {
        halt(r, false);
        st = cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "cannot start %s: %s", r->server, strerror(rc));
        goto fail;
    }

    st = await_ready(r, err);
    if (st != CP_OK)
        goto fail;
    *out = r;
    return CP_OK;

fail:
    pthread_cond_destroy(&r->changed);
    pthread_mutex_destroy(&r->lock);
    free_redisd(r);
    return st;
}

const char *redisd_url(const redisd *r)
{
    return r != NULL ? r->url : NULL;
}

int redisd_pid(const redisd *r)
{
    return r != NULL ? atomic_load((atomic_int *)&r->pid) : 0;
}

unsigned redisd_restarts(const redisd *r)
{
    return r != NULL ? atomic_load((atomic_uint *)&r->restarts) : 0;
}

void redisd_stop(redisd *r)
{
    if (r == NULL)
        return;
    halt(r, true);
    pthread_cond_destroy(&r->changed);
    pthread_mutex_destroy(&r->lock);
    free_redisd(r);
}

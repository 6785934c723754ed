/*
 * test_kv.c - the Redis client pool against a redis-server of its own, on a
 * Unix socket in a temporary directory (and one on a free loopback port for
 * AUTH and SELECT): URL forms, binary-safe values, reply kinds, error
 * replies, EVALSHA with its NOSCRIPT fallback, eight threads sharing one
 * pool, a Redis killed and started again under a live client.
 */
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "core/alloc.h"
#include "kv/kv.h"

static char g_dir[64];
static char g_sock[128];
static pid_t g_redis;               /* the Unix-socket server of the tests */

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

    nanosleep(&ts, NULL);
}

/* Forks redis-server with args; it dies with the test process. */
static pid_t spawn_redis(const char *const *args)
{
    char *argv[32];
    size_t n = 0;
    pid_t parent = getpid();
    pid_t pid;

    argv[n++] = "redis-server";
    while (*args != NULL && n < 31)
        argv[n++] = (char *)*args++;
    argv[n] = NULL;

    pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        execvp("redis-server", argv);
        _exit(127);
    }
    return pid;
}

/* Waits until something answers on the socket or port (any reply counts). */
static int wait_up(const char *sock, int port)
{
    struct timeval tv = { 0, 200000 };

    for (int i = 0; i < 500; i++) {
        redisContext *c = sock != NULL ? redisConnectUnixWithTimeout(sock, tv)
                                       : redisConnectWithTimeout("127.0.0.1", port, tv);
        redisReply *r = NULL;

        if (c != NULL && c->err == 0)
            r = redisCommand(c, "PING");
        if (r != NULL)
            freeReplyObject(r);
        if (c != NULL)
            redisFree(c);
        if (r != NULL)
            return 0;
        sleep_ms(20);
    }
    return -1;
}

static void stop_redis(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

static pid_t start_unix_redis(void)
{
    char log[128];
    const char *args[] = {
        "--port", "0", "--unixsocket", g_sock, "--save", "", "--appendonly", "no",
        "--daemonize", "no", "--dir", g_dir, "--logfile", log, NULL,
    };
    pid_t pid;

    snprintf(log, sizeof(log), "%s/redis.log", g_dir);
    pid = spawn_redis(args);
    if (pid > 0 && wait_up(g_sock, 0) != 0) {
        stop_redis(pid);
        return -1;
    }
    return pid;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "/tmp/cloudpacs-kv-XXXXXX");
    if (mkdtemp(g_dir) == NULL)
        return -1;
    snprintf(g_sock, sizeof(g_sock), "%s/redis.sock", g_dir);
    g_redis = start_unix_redis();
    return g_redis > 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    stop_redis(g_redis);
    g_redis = 0;
    nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static kv *open_kv(const char *url)
{
    kv_config cfg = { .url = url };
    kv *k = NULL;
    cp_error err;

    cp_error_clear(&err);
    assert_int_equal(kv_create(&cfg, &k, &err), CP_OK);
    return k;
}

static kv *open_unix(void)
{
    char url[160];

    snprintf(url, sizeof(url), "unix://%s", g_sock);
    return open_kv(url);
}

/* --- URLs and keys ------------------------------------------------------- */

static void test_url_forms(void **state)
{
    static const char *const good[] = {
        "redis://127.0.0.1", "redis://localhost:6380", "redis://:pw@host:1/3",
        "redis://user:p%40ss@host/0", "redis://[::1]:6379/", "unix:///tmp/r.sock",
        "unix:/tmp/r.sock", "/tmp/r.sock",
    };
    static const char *const bad[] = {
        "", "http://host", "redis://", "redis://:6379", "redis://host:0",
        "redis://host:65536", "redis://host:12ab", "redis://host/db",
        "redis://host?db=1", "redis://pw@host", "redis://:p%zz@host",
        "redis://[::1", "unix://relative.sock", "rediss://host", "tcp://host",
    };
    kv_config cfg = { 0 };
    char long_path[160];
    cp_error err;
    kv *k;

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        cfg.url = good[i];
        k = NULL;
        assert_int_equal(kv_create(&cfg, &k, NULL), CP_OK);
        assert_non_null(k);
        assert_false(kv_available(k));
        kv_destroy(k);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cfg.url = bad[i];
        cp_error_clear(&err);
        k = (kv *)1;
        assert_int_equal(kv_create(&cfg, &k, &err), CP_ERR_CONFIG);
        assert_null(k);
        assert_true(err.detail[0] != '\0');
    }
    cfg.url = NULL;
    assert_int_equal(kv_create(&cfg, &k, NULL), CP_ERR_CONFIG);

    /* A socket path longer than a sockaddr_un holds. */
    memset(long_path, 'a', sizeof(long_path) - 1);
    long_path[sizeof(long_path) - 1] = '\0';
    long_path[0] = '/';
    cfg.url = long_path;
    assert_int_equal(kv_create(&cfg, &k, NULL), CP_ERR_CONFIG);
    long_path[100] = '\0';
    assert_int_equal(kv_create(&cfg, &k, NULL), CP_OK);
    kv_destroy(k);

    cfg.url = "/tmp/r.sock";
    cfg.pool_max = 1000;
    assert_int_equal(kv_create(&cfg, &k, NULL), CP_ERR_CONFIG);
    kv_destroy(NULL);
}

static void test_keys(void **state)
{
    kv_config cfg = { .url = "/tmp/r.sock", .prefix = "t:" };
    char key[300];
    char big[300];
    kv *k = open_kv("/tmp/r.sock");

    (void)state;
    assert_int_equal(kv_key(k, key, sizeof(key), "session", "abc"), CP_OK);
    assert_string_equal(key, "cp:session:abc");
    assert_int_equal(kv_key(k, key, sizeof(key), "pool", NULL), CP_OK);
    assert_string_equal(key, "cp:pool");
    assert_int_equal(kv_key(k, key, 8, "pool", NULL), CP_OK);
    assert_int_equal(kv_key(k, key, 7, "pool", NULL), CP_ERR_LIMIT);
    memset(big, 'x', 260);
    big[260] = '\0';
    assert_int_equal(kv_key(k, key, sizeof(key), big, NULL), CP_ERR_LIMIT);
    kv_destroy(k);

    assert_int_equal(kv_create(&cfg, &k, NULL), CP_OK);
    assert_int_equal(kv_key(k, key, sizeof(key), "a", "b"), CP_OK);
    assert_string_equal(key, "t:a:b");
    kv_destroy(k);
}

/* --- commands ------------------------------------------------------------ */

static void test_binary_values(void **state)
{
    static const char value[] = { 'a', 0, 'b', 0, 0, '\xff', 'c' };
    const char *argv[3] = { "SET", "cp:test:bin", value };
    size_t argl[3] = { 3, 11, sizeof(value) };
    kv_reply *r = NULL;
    kv *k = open_unix();

    (void)state;
    assert_int_equal(kv_command(k, 3, argv, argl, &r, NULL), CP_OK);
    assert_int_equal(r->type, KV_REPLY_STRING);
    assert_string_equal(r->str, "OK");
    kv_reply_free(r);
    assert_true(kv_available(k));

    assert_int_equal(kv_commandv(k, &r, NULL, "GET", "cp:test:bin", (char *)NULL), CP_OK);
    assert_int_equal(r->type, KV_REPLY_STRING);
    assert_int_equal(r->len, sizeof(value));
    assert_memory_equal(r->str, value, sizeof(value));
    assert_int_equal(r->str[r->len], '\0');
    kv_reply_free(r);

    /* A key with a NUL inside is a different key. */
    argv[0] = "GET";
    argl[0] = 3;
    argv[1] = "cp:test:bin\0x";
    argl[1] = 13;
    assert_int_equal(kv_command(k, 2, argv, argl, &r, NULL), CP_OK);
    assert_int_equal(r->type, KV_REPLY_NIL);
    kv_reply_free(r);
    kv_destroy(k);
}

static void test_reply_kinds(void **state)
{
    kv_reply *r = NULL;
    cp_error err;
    kv *k = open_unix();

    (void)state;
    assert_int_equal(kv_commandv(k, NULL, NULL, "DEL", "cp:test:n", "cp:test:l",
                                 (char *)NULL), CP_OK);
    assert_int_equal(kv_commandv(k, &r, NULL, "INCRBY", "cp:test:n", "41", (char *)NULL),
                     CP_OK);
    assert_int_equal(r->type, KV_REPLY_INTEGER);
    assert_int_equal(r->integer, 41);
    kv_reply_free(r);

    assert_int_equal(kv_commandv(k, &r, NULL, "GET", "cp:test:none", (char *)NULL), CP_OK);
    assert_int_equal(r->type, KV_REPLY_NIL);
    kv_reply_free(r);

    assert_int_equal(kv_commandv(k, NULL, NULL, "RPUSH", "cp:test:l", "a", "", "ccc",
                                 (char *)NULL), CP_OK);
    assert_int_equal(kv_commandv(k, &r, NULL, "LRANGE", "cp:test:l", "0", "-1",
                                 (char *)NULL), CP_OK);
    assert_int_equal(r->type, KV_REPLY_ARRAY);
    assert_int_equal(r->count, 3);
    assert_string_equal(r->elements[0]->str, "a");
    assert_int_equal(r->elements[1]->len, 0);
    assert_string_equal(r->elements[1]->str, "");
    assert_string_equal(r->elements[2]->str, "ccc");
    kv_reply_free(r);

    assert_int_equal(kv_commandv(k, &r, NULL, "LRANGE", "cp:test:empty", "0", "-1",
                                 (char *)NULL), CP_OK);
    assert_int_equal(r->type, KV_REPLY_ARRAY);
    assert_int_equal(r->count, 0);
    kv_reply_free(r);

    /* Nested arrays, from a script's table. */
    assert_int_equal(kv_eval(k, "return {1, {'x', {2}}, 'y'}", 0, NULL, 0, NULL, &r,
                             NULL), CP_OK);
    assert_int_equal(r->type, KV_REPLY_ARRAY);
    assert_int_equal(r->count, 3);
    assert_int_equal(r->elements[0]->integer, 1);
    assert_int_equal(r->elements[1]->type, KV_REPLY_ARRAY);
    assert_string_equal(r->elements[1]->elements[0]->str, "x");
    assert_int_equal(r->elements[1]->elements[1]->elements[0]->integer, 2);
    assert_string_equal(r->elements[2]->str, "y");
    kv_reply_free(r);

    cp_error_clear(&err);
    assert_int_equal(kv_ping(k, &err), CP_OK);
    assert_int_equal(kv_command(k, 0, NULL, NULL, &r, NULL), CP_ERR_INVALID);
    assert_null(r);
    kv_destroy(k);
}

static void test_error_reply(void **state)
{
    kv_reply *r = (kv_reply *)1;
    cp_error err;
    kv *k = open_unix();

    (void)state;
    cp_error_clear(&err);
    assert_int_equal(kv_commandv(k, &r, &err, "NOSUCHCOMMAND", "x", (char *)NULL),
                     CP_ERR_INVALID);
    assert_null(r);
    assert_non_null(strstr(err.detail, "unknown command"));

    assert_int_equal(kv_commandv(k, NULL, NULL, "SET", "cp:test:s", "abc", (char *)NULL),
                     CP_OK);
    cp_error_clear(&err);
    assert_int_equal(kv_commandv(k, &r, &err, "INCR", "cp:test:s", (char *)NULL),
                     CP_ERR_INVALID);
    assert_non_null(strstr(err.detail, "not an integer"));

    /* An error reply leaves the connection usable. */
    assert_int_equal(kv_ping(k, NULL), CP_OK);
    assert_true(kv_available(k));
    kv_destroy(k);
}

static const char incr_script[] = "return redis.call('INCR', KEYS[1])";

static void test_eval(void **state)
{
    const char *keys[1] = { "cp:test:eval" };
    kv_reply *r = NULL;
    kv *k = open_unix();

    (void)state;
    assert_int_equal(kv_commandv(k, NULL, NULL, "DEL", keys[0], (char *)NULL), CP_OK);
    for (long long want = 1; want <= 2; want++) {
        assert_int_equal(kv_eval(k, incr_script, 1, keys, 0, NULL, &r, NULL), CP_OK);
        assert_int_equal(r->type, KV_REPLY_INTEGER);
        assert_int_equal(r->integer, want);
        kv_reply_free(r);
    }

    assert_int_equal(kv_commandv(k, NULL, NULL, "SCRIPT", "FLUSH", (char *)NULL), CP_OK);
    assert_int_equal(kv_eval(k, incr_script, 1, keys, 0, NULL, &r, NULL), CP_OK);
    assert_int_equal(r->integer, 3);
    kv_reply_free(r);

    /* Arguments, and an error raised by the script. */
    {
        const char *args[2] = { "5", "x" };
        cp_error err;

        assert_int_equal(kv_eval(k, "return redis.call('INCRBY', KEYS[1], ARGV[1])",
                                 1, keys, 2, args, &r, NULL), CP_OK);
        assert_int_equal(r->integer, 8);
        kv_reply_free(r);
        cp_error_clear(&err);
        assert_int_equal(kv_eval(k, "return redis.error_reply('nope')", 0, NULL, 0, NULL,
                                 &r, &err), CP_ERR_INVALID);
        assert_non_null(strstr(err.detail, "nope"));
    }
    kv_destroy(k);
}

/* Every allocation of a create, an array reply and an eval may fail cleanly. */
static void test_out_of_memory(void **state)
{
    const char *keys[1] = { "cp:test:oom" };
    char url[160];
    kv_config cfg = { .url = url };
    bool done = false;

    (void)state;
    snprintf(url, sizeof(url), "unix://%s", g_sock);
    for (long n = 0; n < 200 && !done; n++) {
        kv_reply *r = NULL;
        kv *k = NULL;
        cp_status st;

        cp_alloc_fail_after(n);
        st = kv_create(&cfg, &k, NULL);
        if (st == CP_OK)
            st = kv_commandv(k, NULL, NULL, "RPUSH", "cp:test:oomlist", "a", "b",
                             (char *)NULL);
        if (st == CP_OK)
            st = kv_commandv(k, &r, NULL, "LRANGE", "cp:test:oomlist", "0", "1",
                             (char *)NULL);
        kv_reply_free(r);
        r = NULL;
        if (st == CP_OK)
            st = kv_eval(k, incr_script, 1, keys, 0, NULL, &r, NULL);
        cp_alloc_fail_after(-1);
        assert_true(st == CP_OK || st == CP_ERR_NOMEM);
        done = st == CP_OK;
        kv_reply_free(r);
        kv_destroy(k);
    }
    assert_true(done);
}

/* A command that outlives the timeout fails, and costs its connection only. */
static void test_command_timeout(void **state)
{
    kv_config cfg = { .url = g_sock, .timeout_ms = 200 };
    kv_reply *r = NULL;
    cp_error err;
    double t0;
    kv *k = NULL;

    (void)state;
    assert_int_equal(kv_create(&cfg, &k, NULL), CP_OK);
    cp_error_clear(&err);
    t0 = now_s();
    assert_int_equal(kv_commandv(k, &r, &err, "BLPOP", "cp:test:never", "3", (char *)NULL),
                     CP_ERR_UNAVAILABLE);
    assert_true(now_s() - t0 < 1.5);
    assert_null(r);
    assert_non_null(strstr(err.detail, "200 ms"));
    assert_int_equal(kv_ping(k, NULL), CP_OK);
    kv_destroy(k);
}

/* --- threads ------------------------------------------------------------- */

enum { THREADS = 8, INCRS = 1000 };

static void *incr_thread(void *arg)
{
    kv *k = arg;
    long failures = 0;

    for (int i = 0; i < INCRS; i++)
        if (kv_commandv(k, NULL, NULL, "INCR", "cp:test:count", (char *)NULL) != CP_OK)
            failures++;
    return (void *)failures;
}

static void test_threads(void **state)
{
    kv_config cfg = { .url = g_sock, .pool_max = 4 };
    pthread_t t[THREADS];
    kv_reply *r = NULL;
    kv *k = NULL;

    (void)state;
    assert_int_equal(kv_create(&cfg, &k, NULL), CP_OK);
    assert_int_equal(kv_commandv(k, NULL, NULL, "DEL", "cp:test:count", (char *)NULL),
                     CP_OK);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, incr_thread, k), 0);
    for (int i = 0; i < THREADS; i++) {
        void *failures;

        pthread_join(t[i], &failures);
        assert_int_equal((long)failures, 0);
    }
    assert_int_equal(kv_commandv(k, &r, NULL, "GET", "cp:test:count", (char *)NULL), CP_OK);
    assert_string_equal(r->str, "8000");
    kv_reply_free(r);
    kv_destroy(k);

    /* The default pool too. */
    k = open_unix();
    assert_int_equal(kv_commandv(k, NULL, NULL, "DEL", "cp:test:count", (char *)NULL),
                     CP_OK);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, incr_thread, k), 0);
    for (int i = 0; i < THREADS; i++) {
        void *failures;

        pthread_join(t[i], &failures);
        assert_int_equal((long)failures, 0);
    }
    assert_int_equal(kv_commandv(k, &r, NULL, "GET", "cp:test:count", (char *)NULL), CP_OK);
    assert_string_equal(r->str, "8000");
    kv_reply_free(r);
    kv_destroy(k);
}

/* --- Redis away and back ------------------------------------------------- */

static void test_redis_killed_and_back(void **state)
{
    kv_reply *r = NULL;
    cp_error err;
    double t0;
    int ok_after = -1;
    kv *k = open_unix();

    (void)state;
    assert_int_equal(kv_commandv(k, NULL, NULL, "SET", "cp:test:k", "1", (char *)NULL),
                     CP_OK);
    assert_true(kv_available(k));

    kill(g_redis, SIGKILL);
    waitpid(g_redis, NULL, 0);
    g_redis = 0;

    for (int i = 0; i < 10; i++) {
        cp_status st;

        cp_error_clear(&err);
        t0 = now_s();
        st = kv_commandv(k, &r, &err, "GET", "cp:test:k", (char *)NULL);
        assert_int_equal(st, CP_ERR_UNAVAILABLE);
        assert_null(r);
        assert_true(now_s() - t0 < 1.5);
        assert_true(err.detail[0] != '\0');
        assert_false(kv_available(k));
    }
    cp_error_clear(&err);
    assert_int_equal(kv_ping(k, &err), CP_ERR_UNAVAILABLE);
    assert_int_equal(kv_eval(k, incr_script, 0, NULL, 0, NULL, NULL, NULL),
                     CP_ERR_UNAVAILABLE);

    g_redis = start_unix_redis();
    assert_true(g_redis > 0);
    for (int i = 0; i < 400 && ok_after < 0; i++) {
        if (kv_ping(k, NULL) == CP_OK)
            ok_after = i;
        else
            sleep_ms(25);
    }
    assert_true(ok_after >= 0);
    assert_true(kv_available(k));

    /* The server started empty; the script is loaded again. */
    {
        const char *keys[1] = { "cp:test:again" };

        assert_int_equal(kv_eval(k, incr_script, 1, keys, 0, NULL, &r, NULL), CP_OK);
        assert_int_equal(r->integer, 1);
        kv_reply_free(r);
    }
    kv_destroy(k);
}

/* --- TCP with AUTH and SELECT --------------------------------------------- */

static int free_port(void)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port = -1;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0
        && getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static void test_password_tcp(void **state)
{
    char port_s[16];
    char url[96];
    char log[128];
    kv_reply *r = NULL;
    cp_error err;
    cp_status st;
    int port = free_port();
    pid_t pid;
    kv *k;
    kv *k0;

    (void)state;
    assert_true(port > 0);
    snprintf(port_s, sizeof(port_s), "%d", port);
    snprintf(log, sizeof(log), "%s/redis-tcp.log", g_dir);
    {
        const char *args[] = {
            "--port", port_s, "--bind", "127.0.0.1", "--requirepass", "s3cret",
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--dir", g_dir, "--logfile", log, NULL,
        };

        pid = spawn_redis(args);
    }
    assert_true(pid > 0);
    assert_int_equal(wait_up(NULL, port), 0);

    snprintf(url, sizeof(url), "redis://:s3cret@127.0.0.1:%d/2", port);
    k = open_kv(url);
    assert_int_equal(kv_commandv(k, NULL, NULL, "SET", "cp:test:db", "two", (char *)NULL),
                     CP_OK);
    snprintf(url, sizeof(url), "redis://:s3cret@127.0.0.1:%d", port);
    k0 = open_kv(url);
    assert_int_equal(kv_commandv(k0, &r, NULL, "GET", "cp:test:db", (char *)NULL), CP_OK);
    assert_int_equal(r->type, KV_REPLY_NIL);
    kv_reply_free(r);
    assert_int_equal(kv_commandv(k0, NULL, NULL, "SELECT", "2", (char *)NULL), CP_OK);
    assert_int_equal(kv_commandv(k0, &r, NULL, "GET", "cp:test:db", (char *)NULL), CP_OK);
    assert_string_equal(r->str, "two");
    kv_reply_free(r);
    kv_destroy(k0);
    kv_destroy(k);

    snprintf(url, sizeof(url), "redis://:wrong@127.0.0.1:%d/2", port);
    k = open_kv(url);
    cp_error_clear(&err);
    st = kv_ping(k, &err);
    assert_true(st == CP_ERR_UNAVAILABLE || st == CP_ERR_INVALID);
    assert_non_null(strstr(err.detail, "AUTH"));
    assert_false(kv_available(k));
    kv_destroy(k);

    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
    k = open_kv(url);
    cp_error_clear(&err);
    st = kv_ping(k, &err);
    assert_true(st == CP_ERR_INVALID || st == CP_ERR_UNAVAILABLE);
    assert_non_null(strstr(err.detail, "NOAUTH"));
    kv_destroy(k);

    stop_redis(pid);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_forms),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_binary_values),
        cmocka_unit_test(test_reply_kinds),
        cmocka_unit_test(test_error_reply),
        cmocka_unit_test(test_eval),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_command_timeout),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_redis_killed_and_back),
        cmocka_unit_test(test_password_tcp),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

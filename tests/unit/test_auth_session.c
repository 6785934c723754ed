/*
 * test_auth_session.c - logins, sessions and cached principals (session.h)
 * against a real redis-server this test starts on a Unix socket in a
 * temporary directory (no persistence) and stops itself, and a directory
 * database of a small tree of institutions in the same directory.
 *
 * The service runs on a test clock for absolute expiry, the profile check
 * period and TOTP codes; idle expiry is also shown through Redis's own
 * EXPIRE. The last test kills Redis and starts it again on the same socket.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth/credential.h"
#include "auth/directory.h"
#include "auth/policy.h"
#include "auth/session.h"
#include "core/limits.h"
#include "kv/kv.h"

#define PASSWORD     "correct-horse-9"
#define SERVICE_TOK  "service-token-for-tests-0123456789"
#define LOCK_AFTER   3
#define LOCK_S       300

typedef struct fixture {
    char dir[64];
    char sock[96];
    pid_t redis;
    directory *d;
    kv *k;
    session_service *s;
    /* Institutions: centre C > hospital H > clinic K; hospital H2 > clinic K2. */
    int64_t c, h, k_, h2, k2;
    /* Users. */
    int64_t tech, doc, iadmin, sec, locky, gone, chg;
    char sec_secret[DIRECTORY_SECRET_MAX + 1];
} fixture;

static fixture fx;
static int64_t clock_now;

static int64_t test_clock(void)
{
    return clock_now;
}

static int64_t real_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    nanosleep(&ts, NULL);
}

/* --- the Redis this test owns -------------------------------------------------- */

static bool socket_answers(const char *path)
{
    struct sockaddr_un sa;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    bool ok;

    if (fd < 0)
        return false;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path) {
        close(fd);
        return false;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

static pid_t redis_start(void)
{
    pid_t pid;
    int i;

    unlink(fx.sock);
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);

        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
        }
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", fx.sock,
               "--save", "", "--appendonly", "no", "--dir", fx.dir, (char *)NULL);
        _exit(127);
    }
    for (i = 0; i < 500; i++) {
        int status;

        if (socket_answers(fx.sock))
            return pid;
        if (waitpid(pid, &status, WNOHANG) == pid)
            return -1;
        sleep_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

static void redis_stop(int sig)
{
    if (fx.redis <= 0)
        return;
    kill(fx.redis, sig);
    waitpid(fx.redis, NULL, 0);
    fx.redis = 0;
}

/* --- the directory ---------------------------------------------------------------- */

static int64_t add_institution(int64_t parent, directory_institution_kind kind,
                               const char *code)
{
    directory_institution inst;
    cp_error err;

    memset(&inst, 0, sizeof inst);
    inst.parent_id = parent;
    inst.kind = kind;
    snprintf(inst.code, sizeof inst.code, "%s", code);
    snprintf(inst.name, sizeof inst.name, "Institution %s", code);
    cp_error_clear(&err);
    if (directory_institution_create(fx.d, &inst, &err) != CP_OK) {
        fprintf(stderr, "institution %s: %s\n", code, err.detail);
        return -1;
    }
    return inst.id;
}

static int64_t add_user(const char *name, int64_t institution, unsigned roles,
                        const char *hash)
{
    directory_user u;
    cp_error err;

    memset(&u, 0, sizeof u);
    snprintf(u.username, sizeof u.username, "%s", name);
    snprintf(u.display_name, sizeof u.display_name, "User %s", name);
    u.institution_id = institution;
    u.roles = roles;
    cp_error_clear(&err);
    if (directory_user_create(fx.d, &u, hash, &err) != CP_OK) {
        fprintf(stderr, "user %s: %s\n", name, err.detail);
        return -1;
    }
    return u.id;
}

static int add_contract(int64_t user, int64_t requesting, const char *start, const char *end,
                        const char *modalities)
{
    directory_contract c;
    cp_error err;

    memset(&c, 0, sizeof c);
    c.user_id = user;
    c.requesting_id = requesting;
    c.reading_id = fx.c;
    snprintf(c.start_date, sizeof c.start_date, "%s", start);
    snprintf(c.end_date, sizeof c.end_date, "%s", end);
    snprintf(c.modalities, sizeof c.modalities, "%s", modalities);
    cp_error_clear(&err);
    if (directory_contract_create(fx.d, &c, &err) != CP_OK) {
        fprintf(stderr, "contract: %s\n", err.detail);
        return -1;
    }
    return 0;
}

static int make_directory(void)
{
    char path[128], hash[CREDENTIAL_HASH_SIZE];
    uint8_t key[32];
    cp_error err;
    directory_ae ae;

    cp_error_clear(&err);
    snprintf(path, sizeof path, "%s/dir.db", fx.dir);
    if (directory_open_sqlite(path, &fx.d, &err) != CP_OK)
        return -1;
    snprintf(path, sizeof path, "%s/seal.key", fx.dir);
    if (credential_key_load(path, key, &err) != CP_OK)
        return -1;
    directory_set_seal_key(fx.d, key);

    fx.c = add_institution(0, DIRECTORY_CENTRE, "C");
    fx.h = add_institution(fx.c, DIRECTORY_HOSPITAL, "H");
    fx.k_ = add_institution(fx.h, DIRECTORY_CLINIC, "K");
    fx.h2 = add_institution(0, DIRECTORY_HOSPITAL, "H2");
    fx.k2 = add_institution(fx.h2, DIRECTORY_CLINIC, "K2");
    if (fx.c < 0 || fx.h < 0 || fx.k_ < 0 || fx.h2 < 0 || fx.k2 < 0)
        return -1;

    /* One Argon2id hash for every user: hashing costs a tenth of a second. */
    if (credential_password_hash(PASSWORD, hash, sizeof hash, &err) != CP_OK)
        return -1;
    fx.tech = add_user("tech", fx.h, ROLE_TECHNICIAN, hash);
    fx.doc = add_user("doc", fx.c, ROLE_RADIOLOGIST, hash);
    fx.iadmin = add_user("iadmin", fx.h, ROLE_INSTITUTION_ADMIN, hash);
    fx.sec = add_user("sec", fx.c, ROLE_SECURITY_ADMIN, hash);
    fx.locky = add_user("Locky", fx.h, ROLE_TECHNICIAN, hash);
    fx.gone = add_user("gone", fx.h, ROLE_TECHNICIAN, hash);
    fx.chg = add_user("chg", fx.h, ROLE_TECHNICIAN, hash);
    if (fx.tech < 0 || fx.doc < 0 || fx.iadmin < 0 || fx.sec < 0 || fx.locky < 0 ||
        fx.gone < 0 || fx.chg < 0)
        return -1;

    /* The doctor reads CR and DX for H2 now; the contract with H has ended. */
    if (add_contract(fx.doc, fx.h2, "20200101", "20991231", "CR,DX") != 0 ||
        add_contract(fx.doc, fx.h, "20190101", "20200101", "") != 0)
        return -1;

    if (credential_totp_secret(fx.sec_secret, sizeof fx.sec_secret) != CP_OK ||
        directory_user_set_totp(fx.d, fx.sec, fx.sec_secret, &err) != CP_OK)
        return -1;

    {
        directory_user u;

        if (directory_user_get(fx.d, fx.gone, &u, &err) != CP_OK)
            return -1;
        u.disabled = true;
        if (directory_user_update(fx.d, &u, &err) != CP_OK)
            return -1;
    }

    memset(&ae, 0, sizeof ae);
    snprintf(ae.title, sizeof ae.title, "CT01");
    ae.institution_id = fx.h;
    snprintf(ae.allow, sizeof ae.allow, "store,query,retrieve");
    if (directory_ae_put(fx.d, &ae, &err) != CP_OK)
        return -1;
    return 0;
}

static session_service *make_service(unsigned idle_s, unsigned absolute_s)
{
    session_config cfg;
    session_service *s = NULL;

    memset(&cfg, 0, sizeof cfg);
    cfg.dir = fx.d;
    cfg.kv = fx.k;
    cfg.idle_s = idle_s;
    cfg.absolute_s = absolute_s;
    cfg.lock_after = LOCK_AFTER;
    cfg.lock_s = LOCK_S;
    cfg.mfa_admins = true;
    cfg.service_token = SERVICE_TOK;
    cfg.now_us = test_clock;
    if (session_service_create(&cfg, &s, NULL) != CP_OK)
        return NULL;
    return s;
}

static int group_teardown(void **state);

static int group_setup(void **state)
{
    char sock_url[160];
    kv_config kc;

    memset(&fx, 0, sizeof fx);
    clock_now = real_now();
    snprintf(fx.dir, sizeof fx.dir, "/tmp/cp-session-XXXXXX");
    if (mkdtemp(fx.dir) == NULL)
        return -1;
    snprintf(fx.sock, sizeof fx.sock, "%s/redis.sock", fx.dir);
    if (credential_init() != CP_OK)
        goto fail;
    fx.redis = redis_start();
    if (fx.redis <= 0) {
        fprintf(stderr, "redis-server did not start\n");
        goto fail;
    }
    if (make_directory() != 0)
        goto fail;

    memset(&kc, 0, sizeof kc);
    snprintf(sock_url, sizeof sock_url, "unix://%s", fx.sock);
    kc.url = sock_url;
    kc.prefix = "t:";
    if (kv_create(&kc, &fx.k, NULL) != CP_OK)
        goto fail;
    fx.s = make_service(0, 0);
    if (fx.s == NULL)
        goto fail;
    return 0;

fail:
    /* cmocka runs no teardown after a failed setup: stop our Redis here. */
    group_teardown(state);
    return -1;
}

static int group_teardown(void **state)
{
    char cmd[128];

    (void)state;
    session_service_destroy(fx.s);
    kv_destroy(fx.k);
    directory_close(fx.d);
    redis_stop(SIGTERM);
    if (strncmp(fx.dir, "/tmp/cp-session-", 16) == 0) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx.dir);
        if (system(cmd) != 0)
            return -1;
    }
    return 0;
}

/* --- helpers ------------------------------------------------------------------------ */

static session_login_outcome login(session_service *s, const char *user, const char *password,
                                   const char *code)
{
    session_login_outcome out;
    cp_error err;

    cp_error_clear(&err);
    assert_int_equal(session_login(s, user, password, code, "127.0.0.1", &out, &err), CP_OK);
    return out;
}

static principal *resolve_ok(session_service *s, const char *token)
{
    principal *p = NULL;
    cp_error err;

    cp_error_clear(&err);
    if (session_resolve(s, token, "10.0.0.1", &p, &err) != CP_OK)
        fail_msg("resolve: %s %s", cp_status_name(err.status), err.detail);
    assert_non_null(p);
    return p;
}

static cp_status resolve_status(session_service *s, const char *token)
{
    principal *p = NULL;
    cp_status st = session_resolve(s, token, "10.0.0.1", &p, NULL);

    principal_free(p);
    return st;
}

static bool has_grant(const principal *p, int64_t institution, const char *modalities)
{
    size_t i;

    for (i = 0; i < p->grant_count; i++)
        if (p->grants[i].institution_id == institution &&
            strcmp(p->grants[i].modalities, modalities) == 0)
            return true;
    return false;
}

/* The date contracts are written in (the server's time zone) at a time. */
static void day_of(int64_t us, char out[9])
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;

    assert_non_null(localtime_r(&t, &tm));
    assert_int_equal(strftime(out, 9, "%Y%m%d", &tm), 8);
}

static void code_at(const char *secret, int64_t us, char out[8])
{
    assert_int_equal(credential_totp_code(secret, us / 1000000, out, 8), CP_OK);
}

/* --- the tests ------------------------------------------------------------------------ */

static void test_login_and_resolve(void **state)
{
    session_login_outcome out;
    principal *p;

    (void)state;
    out = login(fx.s, "TECH", PASSWORD, NULL);
    assert_int_equal(out.result, SESSION_LOGIN_OK);
    assert_int_equal(out.user_id, fx.tech);
    assert_false(out.enrol_only);
    assert_int_equal(strlen(out.token), 47);
    assert_memory_equal(out.token, "cps_", 4);
    assert_int_equal(out.expires_us, clock_now + (int64_t)SESSION_ABSOLUTE_DEFAULT_S * 1000000);

    p = resolve_ok(fx.s, out.token);
    assert_int_equal(p->kind, PRINCIPAL_USER);
    assert_int_equal(p->id, fx.tech);
    assert_string_equal(p->name, "tech");
    assert_int_equal(p->institution_id, fx.h);
    assert_int_equal(p->roles, ROLE_TECHNICIAN);
    assert_false(p->enrol_only);
    assert_int_equal(strlen(p->session_id), 16);
    assert_string_equal(p->peer, "10.0.0.1");
    assert_int_equal(p->grant_count, 2);
    assert_int_equal(p->own_grant_count, 2);
    assert_true(has_grant(p, fx.h, ""));
    assert_true(has_grant(p, fx.k_, ""));
    assert_true(policy_study_visible(p, fx.k_, "CT"));
    assert_false(policy_study_visible(p, fx.c, "CT"));
    assert_false(policy_study_visible(p, fx.h2, "CT"));
    principal_free(p);

    /* Resolved again: from the cache, the same principal. */
    p = resolve_ok(fx.s, out.token);
    assert_int_equal(p->id, fx.tech);
    assert_int_equal(p->grant_count, 2);
    principal_free(p);

    assert_int_equal(resolve_status(fx.s, "cps_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
                     CP_ERR_UNAUTHENTICATED);
    assert_int_equal(resolve_status(fx.s, ""), CP_ERR_UNAUTHENTICATED);
    assert_int_equal(resolve_status(fx.s, NULL), CP_ERR_UNAUTHENTICATED);
    assert_int_equal(resolve_status(fx.s, "Basic abc"), CP_ERR_UNAUTHENTICATED);
}

static void test_wrong_password_and_unknown(void **state)
{
    session_login_outcome out;

    (void)state;
    out = login(fx.s, "tech", "wrong-password-1", NULL);
    assert_int_equal(out.result, SESSION_LOGIN_BAD_CREDENTIALS);
    assert_int_equal(out.user_id, fx.tech);
    assert_string_equal(out.token, "");

    out = login(fx.s, "nobody", PASSWORD, NULL);
    assert_int_equal(out.result, SESSION_LOGIN_BAD_CREDENTIALS);
    assert_int_equal(out.user_id, 0);

    out = login(fx.s, "bad name!", PASSWORD, NULL);
    assert_int_equal(out.result, SESSION_LOGIN_BAD_CREDENTIALS);
    out = login(fx.s, NULL, NULL, NULL);
    assert_int_equal(out.result, SESSION_LOGIN_BAD_CREDENTIALS);

    /* A success clears the failures counted so far. */
    out = login(fx.s, "tech", PASSWORD, NULL);
    assert_int_equal(out.result, SESSION_LOGIN_OK);
}

static void test_lockout(void **state)
{
    session_login_outcome out;
    principal *p = NULL;
    cp_error err;
    int i;

    (void)state;
    for (i = 0; i < LOCK_AFTER; i++) {
        out = login(fx.s, "locky", "wrong-password-1", NULL);
        assert_int_equal(out.result, SESSION_LOGIN_BAD_CREDENTIALS);
    }

    /* Locked: even the right password, under any case of the name. */
    out = login(fx.s, "LOCKY", PASSWORD, NULL);
    assert_int_equal(out.result, SESSION_LOGIN_LOCKED);
    assert_true(out.retry_after_s > 0 && out.retry_after_s <= LOCK_S);
    assert_string_equal(out.token, "");
    cp_error_clear(&err);
    assert_int_equal(session_resolve_password(fx.s, "locky", PASSWORD, "x", &p, &err),
                     CP_ERR_UNAUTHENTICATED);
    assert_null(p);

    assert_int_equal(session_unlock(fx.s, "Locky", NULL), CP_OK);
    out = login(fx.s, "locky", PASSWORD, NULL);
    assert_int_equal(out.result, SESSION_LOGIN_OK);

    /* Unknown names lock too, so that a lockout tells nothing. */
    for (i = 0; i < LOCK_AFTER; i++)
        assert_int_equal(login(fx.s, "ghost", "x", NULL).result,
                         SESSION_LOGIN_BAD_CREDENTIALS);
    assert_int_equal(login(fx.s, "ghost", "x", NULL).result, SESSION_LOGIN_LOCKED);
    assert_int_equal(session_unlock(fx.s, "ghost", NULL), CP_OK);
}

static void test_disabled(void **state)
{
    session_login_outcome out;

    (void)state;
    out = login(fx.s, "gone", "wrong-password-1", NULL);
    assert_int_equal(out.result, SESSION_LOGIN_BAD_CREDENTIALS);
    out = login(fx.s, "gone", PASSWORD, NULL);
    assert_int_equal(out.result, SESSION_LOGIN_DISABLED);
    assert_int_equal(out.user_id, fx.gone);
    assert_string_equal(out.token, "");
    assert_int_equal(session_unlock(fx.s, "gone", NULL), CP_OK);
}

static void test_absolute_and_idle_expiry(void **state)
{
    session_service *short_idle, *short_abs;
    session_login_outcome out;
    int64_t start = clock_now;
    principal *p;

    (void)state;
    /* Absolute: a minute on the test clock, however busy the session. */
    short_abs = make_service(0, 60);
    assert_non_null(short_abs);
    out = login(short_abs, "tech", PASSWORD, NULL);
    assert_int_equal(out.result, SESSION_LOGIN_OK);
    clock_now += 30 * 1000000LL;
    p = resolve_ok(short_abs, out.token);
    principal_free(p);
    clock_now += 31 * 1000000LL;
    assert_int_equal(resolve_status(short_abs, out.token), CP_ERR_UNAUTHENTICATED);
    session_service_destroy(short_abs);
    clock_now = start;

    /* Idle on the test clock: renewed by use, gone after idle_s unused. */
    out = login(fx.s, "tech", PASSWORD, NULL);
    clock_now += (SESSION_IDLE_DEFAULT_S - 10) * 1000000LL;
    p = resolve_ok(fx.s, out.token);
    principal_free(p);
    clock_now += (SESSION_IDLE_DEFAULT_S - 10) * 1000000LL;
    p = resolve_ok(fx.s, out.token);
    principal_free(p);
    clock_now += (SESSION_IDLE_DEFAULT_S + 1) * 1000000LL;
    assert_int_equal(resolve_status(fx.s, out.token), CP_ERR_UNAUTHENTICATED);
    clock_now = start;

    /* Idle through Redis's own EXPIRE: one second, then a second and a half asleep. */
    short_idle = make_service(1, 0);
    assert_non_null(short_idle);
    out = login(short_idle, "tech", PASSWORD, NULL);
    assert_int_equal(out.result, SESSION_LOGIN_OK);
    p = resolve_ok(short_idle, out.token);
    principal_free(p);
    sleep_ms(1500);
    assert_int_equal(resolve_status(short_idle, out.token), CP_ERR_UNAUTHENTICATED);
    session_service_destroy(short_idle);
}

static void test_logout_and_end_user(void **state)
{
    session_login_outcome a, b, c;
    principal *p;

    (void)state;
    a = login(fx.s, "tech", PASSWORD, NULL);
    b = login(fx.s, "tech", PASSWORD, NULL);
    c = login(fx.s, "tech", PASSWORD, NULL);
    assert_string_not_equal(a.token, b.token);

    assert_int_equal(session_logout(fx.s, a.token, NULL), CP_OK);
    assert_int_equal(resolve_status(fx.s, a.token), CP_ERR_UNAUTHENTICATED);
    assert_int_equal(session_logout(fx.s, a.token, NULL), CP_OK);
    assert_int_equal(session_logout(fx.s, "cps_nothing", NULL), CP_OK);
    assert_int_equal(session_logout(fx.s, NULL, NULL), CP_OK);
    p = resolve_ok(fx.s, b.token);
    principal_free(p);

    /* Many stale entries in the user's set: ended in several batches. */
    {
        char key[KV_KEY_MAX], id[24], fake[300][65];
        const char *argv[302];
        kv_reply *r = NULL;
        int i;

        snprintf(id, sizeof id, "%" PRId64, fx.tech);
        assert_int_equal(kv_key(fx.k, key, sizeof key, "usess", id), CP_OK);
        argv[0] = "SADD";
        argv[1] = key;
        for (i = 0; i < 300; i++) {
            snprintf(fake[i], sizeof fake[i], "%064d", i);
            argv[i + 2] = fake[i];
        }
        assert_int_equal(kv_command(fx.k, 302, argv, NULL, NULL, NULL), CP_OK);
        assert_int_equal(session_end_user(fx.s, fx.tech, NULL), CP_OK);
        assert_int_equal(kv_commandv(fx.k, &r, NULL, "EXISTS", key, (char *)NULL), CP_OK);
        assert_int_equal(r->integer, 0);
        kv_reply_free(r);
    }
    assert_int_equal(resolve_status(fx.s, b.token), CP_ERR_UNAUTHENTICATED);
    assert_int_equal(resolve_status(fx.s, c.token), CP_ERR_UNAUTHENTICATED);
    assert_int_equal(session_end_user(fx.s, 999999, NULL), CP_OK);
}

static unsigned resolved_roles(const char *token)
{
    principal *p = resolve_ok(fx.s, token);
    unsigned roles = p->roles;

    principal_free(p);
    return roles;
}

static void test_invalidation(void **state)
{
    session_login_outcome out;
    int64_t start = clock_now;

    (void)state;
    out = login(fx.s, "chg", PASSWORD, NULL);
    assert_int_equal(out.result, SESSION_LOGIN_OK);
    assert_int_equal(resolved_roles(out.token), ROLE_TECHNICIAN);

    /* Without a word to the sessions: the cache holds until the check period. */
    assert_int_equal(directory_user_set_roles(fx.d, fx.chg, ROLE_REVIEWER, NULL), CP_OK);
    assert_int_equal(resolved_roles(out.token), ROLE_TECHNICIAN);
    clock_now += (SESSION_PROFILE_CHECK_S - 1) * 1000000LL;
    assert_int_equal(resolved_roles(out.token), ROLE_TECHNICIAN);
    clock_now += 2 * 1000000LL;
    assert_int_equal(resolved_roles(out.token), ROLE_REVIEWER);

    /* With session_invalidate of the user: at once. */
    assert_int_equal(directory_user_set_roles(fx.d, fx.chg, ROLE_TECHNICIAN, NULL), CP_OK);
    assert_int_equal(resolved_roles(out.token), ROLE_REVIEWER);
    assert_int_equal(session_invalidate(fx.s, fx.chg, NULL), CP_OK);
    assert_int_equal(resolved_roles(out.token), ROLE_TECHNICIAN);

    /* With session_invalidate(0): every principal, at once. */
    assert_int_equal(directory_user_set_roles(fx.d, fx.chg, ROLE_RADIOLOGIST, NULL), CP_OK);
    assert_int_equal(resolved_roles(out.token), ROLE_TECHNICIAN);
    assert_int_equal(session_invalidate(fx.s, 0, NULL), CP_OK);
    assert_int_equal(resolved_roles(out.token), ROLE_RADIOLOGIST);
    assert_int_equal(session_invalidate(fx.s, -1, NULL), CP_ERR_INVALID);

    /* A disabled user's session stops at the next rebuild. */
    {
        directory_user u;

        assert_int_equal(directory_user_get(fx.d, fx.chg, &u, NULL), CP_OK);
        u.disabled = true;
        assert_int_equal(directory_user_update(fx.d, &u, NULL), CP_OK);
        assert_int_equal(session_invalidate(fx.s, fx.chg, NULL), CP_OK);
        assert_int_equal(resolve_status(fx.s, out.token), CP_ERR_UNAUTHENTICATED);
    }
    clock_now = start;
}

static void test_contracts(void **state)
{
    session_login_outcome out;
    principal *p;

    (void)state;
    out = login(fx.s, "doc", PASSWORD, NULL);
    assert_int_equal(out.result, SESSION_LOGIN_OK);
    assert_false(out.enrol_only);
    p = resolve_ok(fx.s, out.token);
    assert_int_equal(p->roles, ROLE_RADIOLOGIST);
    assert_int_equal(p->own_grant_count, 0);
    assert_int_equal(p->grant_count, 2);
    assert_true(has_grant(p, fx.h2, "CR,DX"));
    assert_true(has_grant(p, fx.k2, "CR,DX"));
    assert_true(policy_study_visible(p, fx.h2, "CR"));
    assert_true(policy_study_visible(p, fx.k2, "DX"));
    assert_false(policy_study_visible(p, fx.h2, "CT"));
    assert_false(policy_study_visible(p, fx.h2, NULL));
    assert_false(policy_study_visible(p, fx.h, "CR"));
    assert_false(policy_study_visible(p, fx.c, "CR"));
    principal_free(p);

    /* A contract of today only: open today, closed on the test clock's tomorrow. */
    {
        int64_t start = clock_now;
        char day[9];

        day_of(clock_now, day);
        assert_int_equal(add_contract(fx.doc, fx.h, day, day, "MR"), 0);
        assert_int_equal(session_invalidate(fx.s, fx.doc, NULL), CP_OK);
        p = resolve_ok(fx.s, out.token);
        assert_int_equal(p->grant_count, 4);
        assert_true(policy_study_visible(p, fx.k_, "MR"));
        assert_false(policy_study_visible(p, fx.k_, "CR"));
        principal_free(p);

        /*
         * No invalidation: the cached principal is of another day, so it is
         * rebuilt (the old session has expired by then: a new one).
         */
        clock_now += 26 * 3600 * 1000000LL;
        out = login(fx.s, "doc", PASSWORD, NULL);
        assert_int_equal(out.result, SESSION_LOGIN_OK);
        p = resolve_ok(fx.s, out.token);
        assert_int_equal(p->grant_count, 2);
        assert_false(policy_study_visible(p, fx.k_, "MR"));
        principal_free(p);
        clock_now = start;
    }

    /* A disabled requesting hospital opens nothing. */
    {
        directory_institution inst;

        assert_int_equal(directory_institution_get(fx.d, fx.h2, &inst, NULL), CP_OK);
        inst.disabled = true;
        assert_int_equal(directory_institution_update(fx.d, &inst, NULL), CP_OK);
        assert_int_equal(session_invalidate(fx.s, 0, NULL), CP_OK);
        out = login(fx.s, "doc", PASSWORD, NULL);
        p = resolve_ok(fx.s, out.token);
        assert_int_equal(p->grant_count, 2);   /* today's contract with H */
        assert_true(policy_study_visible(p, fx.k_, "MR"));
        assert_false(policy_study_visible(p, fx.h2, "CR"));
        assert_false(policy_study_visible(p, fx.k2, "CR"));
        principal_free(p);
        inst.disabled = false;
        assert_int_equal(directory_institution_update(fx.d, &inst, NULL), CP_OK);
    }
}

static void test_mfa(void **state)
{
    session_login_outcome out;
    char code[8], stale[8];
    principal *p;

    (void)state;
    out = login(fx.s, "sec", PASSWORD, NULL);
    assert_int_equal(out.result, SESSION_LOGIN_MFA_REQUIRED);
    assert_string_equal(out.token, "");
    out = login(fx.s, "sec", PASSWORD, "");
    assert_int_equal(out.result, SESSION_LOGIN_MFA_REQUIRED);

    code_at(fx.sec_secret, clock_now, code);
    code_at(fx.sec_secret, clock_now - 3600 * 1000000LL, stale);
    if (strcmp(code, stale) != 0) {
        out = login(fx.s, "sec", PASSWORD, stale);
        assert_int_equal(out.result, SESSION_LOGIN_MFA_BAD);
    }
    out = login(fx.s, "sec", "wrong-password-1", code);
    assert_int_equal(out.result, SESSION_LOGIN_BAD_CREDENTIALS);

    out = login(fx.s, "sec", PASSWORD, code);
    assert_int_equal(out.result, SESSION_LOGIN_OK);
    assert_false(out.enrol_only);
    p = resolve_ok(fx.s, out.token);
    assert_int_equal(p->roles, ROLE_SECURITY_ADMIN);
    assert_true(policy_allows(p, POLICY_ADMIN_ROLE_GRANT));
    assert_int_equal(p->grant_count, 0);
    principal_free(p);

    /* The same code again: refused, it was used. */
    out = login(fx.s, "sec", PASSWORD, code);
    assert_int_equal(out.result, SESSION_LOGIN_MFA_BAD);

    /* The next step's code (one step of skew allowed) works once. */
    code_at(fx.sec_secret, clock_now + 30 * 1000000LL, code);
    out = login(fx.s, "sec", PASSWORD, code);
    assert_int_equal(out.result, SESSION_LOGIN_OK);
    assert_int_equal(session_unlock(fx.s, "sec", NULL), CP_OK);
}

static void test_enrolment(void **state)
{
    session_login_outcome out;
    char secret[64], uri[512], code[8];
    principal *p;
    cp_error err;

    (void)state;
    out = login(fx.s, "iadmin", PASSWORD, NULL);
    assert_int_equal(out.result, SESSION_LOGIN_OK);
    assert_true(out.enrol_only);
    p = resolve_ok(fx.s, out.token);
    assert_true(p->enrol_only);
    assert_false(policy_allows(p, POLICY_STUDY_READ));
    assert_false(policy_allows(p, POLICY_USER_MANAGE));

    assert_int_equal(session_totp_begin(fx.s, p, secret, sizeof secret, uri, sizeof uri, NULL),
                     CP_OK);
    assert_int_equal(strlen(secret), 32);
    assert_memory_equal(uri, "otpauth://totp/", 15);
    assert_non_null(strstr(uri, secret));

    cp_error_clear(&err);
    code_at(secret, clock_now - 3600 * 1000000LL, code);
    {
        char now_code[8];

        code_at(secret, clock_now, now_code);
        if (strcmp(code, now_code) != 0)
            assert_int_equal(session_totp_confirm(fx.s, p, out.token, code, &err),
                             CP_ERR_INVALID);
    }
    code_at(secret, clock_now, code);
    cp_error_clear(&err);
    if (session_totp_confirm(fx.s, p, out.token, code, &err) != CP_OK)
        fail_msg("confirm: %s", err.detail);
    principal_free(p);
    assert_int_equal(session_totp_confirm(fx.s, NULL, out.token, code, NULL),
                     CP_ERR_FORBIDDEN);

    /* The same session is no longer enrol-only. */
    p = resolve_ok(fx.s, out.token);
    assert_false(p->enrol_only);
    assert_true(policy_allows(p, POLICY_USER_MANAGE));
    assert_true(policy_manages_institution(p, fx.k_));
    assert_false(policy_manages_institution(p, fx.c));
    /* Nothing pending any more. */
    assert_int_equal(session_totp_confirm(fx.s, p, out.token, code, NULL), CP_ERR_NOT_FOUND);
    principal_free(p);

    /* A new login now needs the code; the confirming code was used. */
    out = login(fx.s, "iadmin", PASSWORD, NULL);
    assert_int_equal(out.result, SESSION_LOGIN_MFA_REQUIRED);
    out = login(fx.s, "iadmin", PASSWORD, code);
    assert_int_equal(out.result, SESSION_LOGIN_MFA_BAD);
    code_at(secret, clock_now + 30 * 1000000LL, code);
    out = login(fx.s, "iadmin", PASSWORD, code);
    assert_int_equal(out.result, SESSION_LOGIN_OK);
    assert_false(out.enrol_only);
    assert_int_equal(session_unlock(fx.s, "iadmin", NULL), CP_OK);
}

static void test_api_token(void **state)
{
    directory_api_token t;
    char text[64], key[KV_KEY_MAX], hash[65];
    kv_reply *r = NULL;
    principal *p;

    (void)state;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "gateway");
    t.institution_id = fx.h;
    t.roles = ROLE_TECHNICIAN;
    assert_int_equal(directory_token_create(fx.d, &t, text, sizeof text, NULL), CP_OK);

    p = resolve_ok(fx.s, text);
    assert_int_equal(p->kind, PRINCIPAL_TOKEN);
    assert_int_equal(p->id, t.id);
    assert_string_equal(p->name, "gateway");
    assert_int_equal(p->institution_id, fx.h);
    assert_true(has_grant(p, fx.h, ""));
    assert_true(has_grant(p, fx.k_, ""));
    assert_true(policy_allows(p, POLICY_STUDY_STORE));
    assert_false(policy_allows(p, POLICY_USER_MANAGE));
    principal_free(p);

    /* Cached for at most SESSION_TOKEN_CACHE_S seconds. */
    credential_token_hash(text, hash);
    assert_int_equal(kv_key(fx.k, key, sizeof key, "tok", hash), CP_OK);
    assert_int_equal(kv_commandv(fx.k, &r, NULL, "TTL", key, (char *)NULL), CP_OK);
    assert_int_equal(r->type, KV_REPLY_INTEGER);
    assert_true(r->integer > 0 && r->integer <= SESSION_TOKEN_CACHE_S);
    kv_reply_free(r);

    /* Revoked: the cached principal serves until it expires (here: dropped). */
    assert_int_equal(directory_token_revoke(fx.d, t.id, NULL), CP_OK);
    p = resolve_ok(fx.s, text);
    principal_free(p);
    assert_int_equal(kv_commandv(fx.k, NULL, NULL, "DEL", key, (char *)NULL), CP_OK);
    assert_int_equal(resolve_status(fx.s, text), CP_ERR_UNAUTHENTICATED);

    assert_int_equal(resolve_status(fx.s, "cpat_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
                     CP_ERR_UNAUTHENTICATED);
    assert_int_equal(resolve_status(fx.s, "cpat_"), CP_ERR_UNAUTHENTICATED);
}

static void test_service_token(void **state)
{
    principal *p;
    int a;

    (void)state;
    p = resolve_ok(fx.s, SERVICE_TOK);
    assert_int_equal(p->kind, PRINCIPAL_SERVICE);
    assert_string_equal(p->name, "service");
    assert_int_equal(p->id, 0);
    for (a = POLICY_STUDY_READ; a <= POLICY_METRICS_READ; a++)
        assert_true(policy_allows(p, (policy_action)a));
    principal_free(p);
    assert_int_equal(resolve_status(fx.s, SERVICE_TOK "x"), CP_ERR_UNAUTHENTICATED);
    assert_int_equal(resolve_status(fx.s, "service-token-for-tests-012345678"),
                     CP_ERR_UNAUTHENTICATED);
}

static void test_ae(void **state)
{
    principal *p = NULL;

    (void)state;
    assert_int_equal(session_resolve_ae(fx.s, "CT01", "10.1.1.1", &p, NULL), CP_OK);
    assert_int_equal(p->kind, PRINCIPAL_AE);
    assert_string_equal(p->name, "CT01");
    assert_int_equal(p->institution_id, fx.h);
    assert_int_equal(p->roles, ROLE_TECHNICIAN);
    assert_string_equal(p->peer, "10.1.1.1");
    assert_true(policy_allows(p, POLICY_STUDY_STORE));
    assert_true(policy_study_visible(p, fx.k_, "CT"));
    assert_false(policy_study_visible(p, fx.h2, "CT"));
    principal_free(p);
    p = NULL;
    assert_int_equal(session_resolve_ae(fx.s, "NOSUCH", "x", &p, NULL), CP_ERR_NOT_FOUND);
    assert_null(p);
}

static void test_resolve_password(void **state)
{
    principal *p = NULL;

    (void)state;
    assert_int_equal(session_resolve_password(fx.s, "tech", PASSWORD, "10.2.2.2", &p, NULL),
                     CP_OK);
    assert_int_equal(p->kind, PRINCIPAL_USER);
    assert_int_equal(p->id, fx.tech);
    assert_string_equal(p->peer, "10.2.2.2");
    assert_string_equal(p->session_id, "");
    principal_free(p);
    p = NULL;
    assert_int_equal(session_resolve_password(fx.s, "tech", "nope-nope-1", "x", &p, NULL),
                     CP_ERR_UNAUTHENTICATED);
    assert_int_equal(session_resolve_password(fx.s, "gone", PASSWORD, "x", &p, NULL),
                     CP_ERR_UNAUTHENTICATED);
    assert_int_equal(session_resolve_password(fx.s, "nobody", PASSWORD, "x", &p, NULL),
                     CP_ERR_UNAUTHENTICATED);
    assert_null(p);
    assert_int_equal(session_unlock(fx.s, "tech", NULL), CP_OK);
    assert_int_equal(session_unlock(fx.s, "nobody", NULL), CP_OK);
}

static void test_redis_away_and_back(void **state)
{
    session_login_outcome before, out;
    principal *p = NULL;
    cp_error err;
    int i;

    (void)state;
    before = login(fx.s, "tech", PASSWORD, NULL);
    assert_int_equal(before.result, SESSION_LOGIN_OK);

    redis_stop(SIGKILL);
    cp_error_clear(&err);
    assert_int_equal(session_resolve(fx.s, before.token, "x", &p, &err), CP_ERR_UNAVAILABLE);
    assert_null(p);
    assert_int_equal(session_login(fx.s, "tech", PASSWORD, NULL, "x", &out, NULL),
                     CP_ERR_UNAVAILABLE);
    assert_string_equal(out.token, "");
    assert_int_equal(session_resolve_password(fx.s, "tech", PASSWORD, "x", &p, NULL),
                     CP_ERR_UNAVAILABLE);
    assert_int_equal(session_logout(fx.s, before.token, NULL), CP_ERR_UNAVAILABLE);
    assert_int_equal(session_invalidate(fx.s, 0, NULL), CP_ERR_UNAVAILABLE);
    /* The service token and AEs need no Redis. */
    assert_int_equal(session_resolve(fx.s, SERVICE_TOK, "x", &p, NULL), CP_OK);
    principal_free(p);
    p = NULL;

    fx.redis = redis_start();
    assert_true(fx.redis > 0);

    /* The kv's back-off may refuse for a few seconds; then it reconnects. */
    for (i = 0; i < 150; i++) {
        cp_status st = session_resolve(fx.s, before.token, "x", &p, NULL);

        if (st != CP_ERR_UNAVAILABLE) {
            assert_int_equal(st, CP_ERR_UNAUTHENTICATED);
            break;
        }
        sleep_ms(100);
    }
    assert_true(i < 150);
    assert_null(p);

    out = login(fx.s, "tech", PASSWORD, NULL);
    assert_int_equal(out.result, SESSION_LOGIN_OK);
    p = resolve_ok(fx.s, out.token);
    assert_int_equal(p->id, fx.tech);
    principal_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_login_and_resolve),
        cmocka_unit_test(test_wrong_password_and_unknown),
        cmocka_unit_test(test_lockout),
        cmocka_unit_test(test_disabled),
        cmocka_unit_test(test_absolute_and_idle_expiry),
        cmocka_unit_test(test_logout_and_end_user),
        cmocka_unit_test(test_invalidation),
        cmocka_unit_test(test_contracts),
        cmocka_unit_test(test_mfa),
        cmocka_unit_test(test_enrolment),
        cmocka_unit_test(test_api_token),
        cmocka_unit_test(test_service_token),
        cmocka_unit_test(test_ae),
        cmocka_unit_test(test_resolve_password),
        cmocka_unit_test(test_redis_away_and_back),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

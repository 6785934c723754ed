/*
 * session.c (bench_session) - how fast the session layer (src/auth/session.h)
 * answers: bearer tokens resolved to principals per second, from one thread
 * and from four, against a redis-server the caller started (bench/session.sh),
 * and logins per second, which Argon2id (libsodium's interactive limits)
 * bounds by design.
 *
 *   bench_session --redis URL --work DIR [--seconds S] [--logins N] [--tiny]
 *
 * DIR receives the directory database (a centre, two hospitals, a clinic, a
 * technician and a radiologist with a contract). Each resolve is a real one:
 * a Lua script on the session hash (expiry checked, idle time renewed), the
 * cached principal and the generation in one MGET, the JSON parsed into a
 * principal, and the profile version checked against the database every
 * SESSION_PROFILE_CHECK_S seconds.
 *
 * Prints, per the bench/ convention:
 *   figure session_resolve.1thread.cloudpacs <n> resolves/s
 *   figure session_resolve.4threads.cloudpacs <n> resolves/s
 *   figure session_resolve_token.1thread.cloudpacs <n> resolves/s  (API token)
 *   figure session_login.cloudpacs <n> logins/s
 *   figure session_password_verify.cloudpacs <n> verifies/s    (Argon2id alone)
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/credential.h"
#include "auth/directory.h"
#include "auth/policy.h"
#include "auth/session.h"
#include "kv/kv.h"

#define PASSWORD "bench-password-1"
#define THREADS  4

typedef struct bench {
    directory *dir;
    kv *kv;
    session_service *s;
    double seconds;
    char tokens[THREADS][64];
    char api_token[64];
} bench;

typedef struct worker {
    bench *b;
    const char *token;
    double seconds;
    long count;
    bool failed;
} worker;

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(const char *what, const cp_error *err)
{
    char msg[512];

    fprintf(stderr, "bench_session: %s: %s\n", what,
            err != NULL ? cp_error_format(err, msg, sizeof msg) : "failed");
    return -1;
}

static int64_t institution(bench *b, int64_t parent, directory_institution_kind kind,
                           const char *code)
{
    directory_institution inst;
    cp_error err;

    memset(&inst, 0, sizeof inst);
    inst.parent_id = parent;
    inst.kind = kind;
    snprintf(inst.code, sizeof inst.code, "%s", code);
    snprintf(inst.name, sizeof inst.name, "%s", code);
    cp_error_clear(&err);
    if (directory_institution_create(b->dir, &inst, &err) != CP_OK)
        return fail("institution", &err);
    return inst.id;
}

static int64_t user(bench *b, const char *name, int64_t inst, unsigned roles, const char *hash)
{
    directory_user u;
    cp_error err;

    memset(&u, 0, sizeof u);
    snprintf(u.username, sizeof u.username, "%s", name);
    snprintf(u.display_name, sizeof u.display_name, "%s", name);
    u.institution_id = inst;
    u.roles = roles;
    cp_error_clear(&err);
    if (directory_user_create(b->dir, &u, hash, &err) != CP_OK)
        return fail("user", &err);
    return u.id;
}

static int populate(bench *b, const char *work)
{
    char path[4096], hash[CREDENTIAL_HASH_SIZE];
    directory_contract c;
    directory_api_token t;
    int64_t centre, h1, clinic, h2, doc;
    cp_error err;

    cp_error_clear(&err);
    snprintf(path, sizeof path, "%s/directory.db", work);
    if (directory_open_sqlite(path, &b->dir, &err) != CP_OK)
        return fail("directory", &err);
    centre = institution(b, 0, DIRECTORY_CENTRE, "CENTRE");
    h1 = institution(b, centre, DIRECTORY_HOSPITAL, "H1");
    clinic = institution(b, h1, DIRECTORY_CLINIC, "CLINIC1");
    h2 = institution(b, 0, DIRECTORY_HOSPITAL, "H2");
    if (centre < 0 || h1 < 0 || clinic < 0 || h2 < 0)
        return -1;
    if (credential_password_hash(PASSWORD, hash, sizeof hash, &err) != CP_OK)
        return fail("password hash", &err);
    if (user(b, "tech", h1, ROLE_TECHNICIAN, hash) < 0)
        return -1;
    doc = user(b, "doc", centre, ROLE_RADIOLOGIST, hash);
    if (doc < 0)
        return -1;

    memset(&c, 0, sizeof c);
    c.user_id = doc;
    c.requesting_id = h2;
    c.reading_id = centre;
    snprintf(c.modalities, sizeof c.modalities, "CR,DX,CT");
    if (directory_contract_create(b->dir, &c, &err) != CP_OK)
        return fail("contract", &err);

    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "gateway");
    t.institution_id = h1;
    t.roles = ROLE_TECHNICIAN;
    if (directory_token_create(b->dir, &t, b->api_token, sizeof b->api_token, &err) != CP_OK)
        return fail("token", &err);
    return 0;
}

static int login(bench *b, const char *name, char *token)
{
    session_login_outcome out;
    cp_error err;

    cp_error_clear(&err);
    if (session_login(b->s, name, PASSWORD, NULL, "127.0.0.1", &out, &err) != CP_OK)
        return fail("login", &err);
    if (out.result != SESSION_LOGIN_OK) {
        fprintf(stderr, "bench_session: login refused (%d)\n", (int)out.result);
        return -1;
    }
    memcpy(token, out.token, sizeof out.token);
    return 0;
}

static void *resolve_loop(void *arg)
{
    worker *w = arg;
    double end = now_s() + w->seconds;
    cp_error err;

    while (now_s() < end) {
        int i;

        /* Check the time every 64 calls: the clock costs more than nothing. */
        for (i = 0; i < 64; i++) {
            principal *p = NULL;

            cp_error_clear(&err);
            if (session_resolve(w->b->s, w->token, "127.0.0.1", &p, &err) != CP_OK ||
                !policy_allows(p, POLICY_STUDY_READ)) {
                fail("resolve", &err);
                principal_free(p);
                w->failed = true;
                return NULL;
            }
            principal_free(p);
            w->count++;
        }
    }
    return NULL;
}

/* Resolves per second over `threads` threads, each with its token. */
static double resolve_rate(bench *b, int threads, bool api_token)
{
    pthread_t th[THREADS];
    worker w[THREADS];
    double start, elapsed;
    long total = 0;
    int i;

    start = now_s();
    for (i = 0; i < threads; i++) {
        w[i] = (worker){ .b = b, .seconds = b->seconds };
        w[i].token = api_token ? b->api_token : b->tokens[i];
        if (pthread_create(&th[i], NULL, resolve_loop, &w[i]) != 0)
            return -1;
    }
    for (i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    elapsed = now_s() - start;
    for (i = 0; i < threads; i++) {
        if (w[i].failed)
            return -1;
        total += w[i].count;
    }
    printf("# session_resolve: %ld resolves in %.2f s over %d thread(s)%s\n", total, elapsed,
           threads, api_token ? ", API token" : "");
    return (double)total / elapsed;
}

static int run(bench *b, int logins)
{
    char hash[CREDENTIAL_HASH_SIZE], token[64];
    double start, rate;
    cp_error err;
    int i;

    for (i = 0; i < THREADS; i++)
        if (login(b, i % 2 == 0 ? "tech" : "doc", b->tokens[i]) != 0)
            return -1;

    rate = resolve_rate(b, 1, false);
    if (rate < 0)
        return -1;
    printf("figure session_resolve.1thread.cloudpacs %.0f resolves/s\n", rate);
    rate = resolve_rate(b, THREADS, false);
    if (rate < 0)
        return -1;
    printf("figure session_resolve.4threads.cloudpacs %.0f resolves/s\n", rate);
    rate = resolve_rate(b, 1, true);
    if (rate < 0)
        return -1;
    printf("figure session_resolve_token.1thread.cloudpacs %.0f resolves/s\n", rate);

    start = now_s();
    for (i = 0; i < logins; i++) {
        if (login(b, "tech", token) != 0)
            return -1;
        session_logout(b->s, token, NULL);
    }
    rate = logins / (now_s() - start);
    printf("figure session_login.cloudpacs %.1f logins/s\n", rate);

    cp_error_clear(&err);
    if (credential_password_hash(PASSWORD, hash, sizeof hash, &err) != CP_OK)
        return fail("password hash", &err);
    start = now_s();
    for (i = 0; i < logins; i++)
        if (!credential_password_verify(hash, PASSWORD))
            return fail("password verify", NULL);
    printf("figure session_password_verify.cloudpacs %.1f verifies/s\n",
           logins / (now_s() - start));
    printf("# session_login: bound by Argon2id (crypto_pwhash interactive limits: "
           "64 MiB, 2 passes); a login is one verify plus a few Redis commands\n");
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_session --redis URL --work DIR [--seconds S] "
                    "[--logins N] [--tiny]\n");
}

int main(int argc, char **argv)
{
    const char *url = NULL, *work = NULL;
    bench b;
    kv_config kc;
    session_config sc;
    cp_error err;
    int logins = 20, i, rc = 1;

    memset(&b, 0, sizeof b);
    b.seconds = 3;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--redis") == 0 && i + 1 < argc) {
            url = argv[++i];
        } else if (strcmp(argv[i], "--work") == 0 && i + 1 < argc) {
            work = argv[++i];
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            b.seconds = atof(argv[++i]);
        } else if (strcmp(argv[i], "--logins") == 0 && i + 1 < argc) {
            logins = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--tiny") == 0) {
            b.seconds = 0.2;
            logins = 2;
        } else {
            usage();
            return 2;
        }
    }
    if (url == NULL || work == NULL || b.seconds <= 0 || logins <= 0) {
        usage();
        return 2;
    }
    if (credential_init() != CP_OK) {
        fail("credential_init", NULL);
        return 1;
    }
    if (populate(&b, work) != 0)
        goto done;

    cp_error_clear(&err);
    memset(&kc, 0, sizeof kc);
    kc.url = url;
    kc.prefix = "bench:";
    if (kv_create(&kc, &b.kv, &err) != CP_OK) {
        fail("kv", &err);
        goto done;
    }
    memset(&sc, 0, sizeof sc);
    sc.dir = b.dir;
    sc.kv = b.kv;
    sc.lock_after = 1000000;
    if (session_service_create(&sc, &b.s, &err) != CP_OK) {
        fail("session service", &err);
        goto done;
    }
    if (run(&b, logins) == 0)
        rc = 0;

done:
    session_service_destroy(b.s);
    kv_destroy(b.kv);
    directory_close(b.dir);
    return rc;
}

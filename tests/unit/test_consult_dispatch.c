/*
 * test_consult_dispatch.c - the dispatch engine against a redis-server of
 * its own (Unix socket in a temporary directory), a directory with a
 * reading centre, two clinics and radiologists with qualifications and
 * contracts, and a test clock: pooling and deadlines, visibility, the grab
 * race, caps, eligibility, give back and cool-down, leases, assign,
 * fallback, alerts, affinity, cancel, the timer lease and the rebuild after
 * Redis lost its data.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth/credential.h"
#include "consult/dispatch.h"
#include "core/alloc.h"

#define S (INT64_C(1000000))

static char g_dir[64];
static char g_sock[128];
static pid_t g_redis;
static _Atomic int64_t g_now;
static int g_case;

static directory *g_directory;
static int64_t g_centre, g_clinic_a, g_clinic_b;
static int64_t g_doc1, g_doc2, g_doc3, g_doc4, g_admin, g_tech_a, g_tech_b;

static int64_t test_now(void)
{
    return atomic_load(&g_now);
}

static void advance(int64_t us)
{
    atomic_fetch_add(&g_now, us);
}

static double mono_s(void)
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

/* --- the Redis of the tests ----------------------------------------------- */

static int wait_up(kv *k)
{
    for (int i = 0; i < 250; i++) {
        if (kv_ping(k, NULL) == CP_OK)
            return 0;
        sleep_ms(20);
    }
    return -1;
}

static pid_t start_redis(void)
{
    char log[128];
    pid_t parent = getpid(), pid;

    snprintf(log, sizeof log, "%s/redis.log", g_dir);
    pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", g_sock,
               "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", g_dir,
               "--logfile", log, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* --- the directory -------------------------------------------------------- */

static char g_hash[CREDENTIAL_HASH_SIZE];

static int64_t inst_add(const char *code, directory_institution_kind kind)
{
    directory_institution i;

    memset(&i, 0, sizeof i);
    snprintf(i.code, sizeof i.code, "%s", code);
    snprintf(i.name, sizeof i.name, "Institution %s", code);
    i.kind = kind;
    if (directory_institution_create(g_directory, &i, NULL) != CP_OK)
        return -1;
    return i.id;
}

static int64_t user_add(const char *name, int64_t inst, unsigned roles)
{
    directory_user u;

    memset(&u, 0, sizeof u);
    snprintf(u.username, sizeof u.username, "%s", name);
    snprintf(u.display_name, sizeof u.display_name, "Dr %s", name);
    u.institution_id = inst;
    u.roles = roles;
    if (directory_user_create(g_directory, &u, g_hash, NULL) != CP_OK)
        return -1;
    return u.id;
}

static int quals(int64_t user, const char *spec)
{
    directory_qualification q[8];
    size_t n = 0;
    char buf[128], *save = NULL;

    snprintf(buf, sizeof buf, "%s", spec);
    for (char *t = strtok_r(buf, " ", &save); t != NULL && n < 8;
         t = strtok_r(NULL, " ", &save)) {
        char *colon = strchr(t, ':');

        *colon = '\0';
        memset(&q[n], 0, sizeof q[n]);
        snprintf(q[n].modality, sizeof q[n].modality, "%s", t);
        snprintf(q[n].body_part, sizeof q[n].body_part, "%s", colon + 1);
        n++;
    }
    return directory_qualifications_set(g_directory, user, q, n, NULL) == CP_OK ? 0 : -1;
}

static int contract(int64_t user, int64_t requesting)
{
    directory_contract c;

    memset(&c, 0, sizeof c);
    c.user_id = user;
    c.requesting_id = requesting;
    c.reading_id = g_centre;
    return directory_contract_create(g_directory, &c, NULL) == CP_OK ? 0 : -1;
}

static int build_directory(void)
{
    char path[128];

    snprintf(path, sizeof path, "%s/index.sqlite", g_dir);
    if (credential_init() != CP_OK ||
        credential_password_hash("fixture pass 1", g_hash, sizeof g_hash, NULL) != CP_OK ||
        directory_open_sqlite(path, &g_directory, NULL) != CP_OK)
        return -1;
    g_centre = inst_add("CENTRE", DIRECTORY_CENTRE);
    g_clinic_a = inst_add("CLINA", DIRECTORY_CLINIC);
    g_clinic_b = inst_add("CLINB", DIRECTORY_CLINIC);
    g_doc1 = user_add("doc1", g_centre, ROLE_RADIOLOGIST);
    g_doc2 = user_add("doc2", g_centre, ROLE_RADIOLOGIST | ROLE_REVIEWER);
    g_doc3 = user_add("doc3", g_centre, ROLE_RADIOLOGIST);
    g_doc4 = user_add("doc4", g_centre, ROLE_RADIOLOGIST);
    g_admin = user_add("admin", g_centre, ROLE_INSTITUTION_ADMIN);
    g_tech_a = user_add("techa", g_clinic_a, ROLE_TECHNICIAN);
    g_tech_b = user_add("techb", g_clinic_b, ROLE_TECHNICIAN);
    if (g_centre < 0 || g_clinic_a < 0 || g_clinic_b < 0 || g_doc1 < 0 || g_doc2 < 0 ||
        g_doc3 < 0 || g_doc4 < 0 || g_admin < 0 || g_tech_a < 0 || g_tech_b < 0)
        return -1;

    /* doc1 reads CT and CR of A; doc2 everything of A and B; doc3 only MR heads;
     * doc4 is qualified for everything but has no contract. */
    if (quals(g_doc1, "CT:* CR:CHEST") || quals(g_doc2, "*:*") || quals(g_doc3, "MR:HEAD") ||
        quals(g_doc4, "*:*"))
        return -1;
    if (contract(g_doc1, g_clinic_a) || contract(g_doc2, g_clinic_a) ||
        contract(g_doc2, g_clinic_b) || contract(g_doc3, g_clinic_a))
        return -1;
    return 0;
}

/* --- principals, made by hand as policy.h allows -------------------------- */

typedef struct who {
    principal p;
    principal_grant g[2];
} who;

static void who_make(who *w, int64_t id, int64_t inst, unsigned roles, int64_t g1, int64_t g2)
{
    memset(w, 0, sizeof *w);
    w->p.kind = PRINCIPAL_USER;
    w->p.id = id;
    w->p.institution_id = inst;
    w->p.roles = roles;
    w->p.grants = w->g;
    w->g[0].institution_id = g1;
    w->g[1].institution_id = g2;
    w->p.grant_count = g2 != 0 ? 2 : (g1 != 0 ? 1 : 0);
}

static who g_p1, g_p2, g_p3, g_p4, g_padmin, g_pa, g_pb;

static void principals(void)
{
    who_make(&g_p1, g_doc1, g_centre, ROLE_RADIOLOGIST, g_clinic_a, 0);
    who_make(&g_p2, g_doc2, g_centre, ROLE_RADIOLOGIST | ROLE_REVIEWER, g_clinic_a,
             g_clinic_b);
    who_make(&g_p3, g_doc3, g_centre, ROLE_RADIOLOGIST, g_clinic_a, 0);
    who_make(&g_p4, g_doc4, g_centre, ROLE_RADIOLOGIST, 0, 0);
    who_make(&g_padmin, g_admin, g_centre, ROLE_INSTITUTION_ADMIN, g_centre, 0);
    who_make(&g_pa, g_tech_a, g_clinic_a, ROLE_TECHNICIAN, g_clinic_a, 0);
    who_make(&g_pb, g_tech_b, g_clinic_b, ROLE_TECHNICIAN, g_clinic_b, 0);
}

/* --- one engine per test -------------------------------------------------- */

typedef struct seen {
    dispatch_event_kind kind;
    char event[24];
    int64_t order_id;
    int64_t doctor;
} seen;

typedef struct fixture {
    kv *kv;
    order_store *orders;
    dispatch *d;
    pthread_mutex_t lock;
    seen events[256];
    size_t nevents;
} fixture;

static void on_event(void *ctx, const dispatch_event *e)
{
    fixture *fx = ctx;

    pthread_mutex_lock(&fx->lock);
    if (fx->nevents < 256) {
        seen *s = &fx->events[fx->nevents++];

        s->kind = e->kind;
        snprintf(s->event, sizeof s->event, "%s", e->event != NULL ? e->event : "");
        s->order_id = e->order != NULL ? e->order->id : 0;
        s->doctor = e->doctor_id;
    }
    pthread_mutex_unlock(&fx->lock);
}

static size_t count_events(fixture *fx, dispatch_event_kind kind, const char *event,
                           int64_t order_id)
{
    size_t n = 0;

    pthread_mutex_lock(&fx->lock);
    for (size_t i = 0; i < fx->nevents; i++)
        if (fx->events[i].kind == kind && (event == NULL || strcmp(fx->events[i].event,
                                                                   event) == 0) &&
            (order_id == 0 || fx->events[i].order_id == order_id))
            n++;
    pthread_mutex_unlock(&fx->lock);
    return n;
}

static dispatch_config engine_config(fixture *fx, const char *instance)
{
    dispatch_config c;

    memset(&c, 0, sizeof c);
    c.kv = fx->kv;
    c.orders = fx->orders;
    c.dir = g_directory;
    dispatch_rules_default(&c.rules);
    c.rules.override_count = 1;
    snprintf(c.rules.overrides[0].modality, sizeof c.rules.overrides[0].modality, "MR");
    c.rules.overrides[0].priority = ORDER_ROUTINE;
    c.rules.overrides[0].deadline_s = 14400;
    c.instance_id = instance;
    c.now_us = test_now;
    c.on_event = on_event;
    c.event_ctx = fx;
    c.lease_ms = 2000;
    return c;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    char url[160], path[128];
    kv_config kc = { 0 };
    dispatch_config dc;

    pthread_mutex_init(&fx->lock, NULL);
    snprintf(url, sizeof url, "unix://%s", g_sock);
    kc.url = url;
    if (kv_create(&kc, &fx->kv, NULL) != CP_OK ||
        kv_commandv(fx->kv, NULL, NULL, "FLUSHALL", (char *)NULL) != CP_OK)
        return -1;
    snprintf(path, sizeof path, "%s/orders-%d.sqlite", g_dir, ++g_case);
    if (order_store_open_sqlite(path, &fx->orders, NULL) != CP_OK)
        return -1;
    atomic_store(&g_now, INT64_C(1780000000) * S);
    dc = engine_config(fx, "test-a");
    if (dispatch_create(&dc, &fx->d, NULL) != CP_OK)
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;

    dispatch_destroy(fx->d);
    order_store_close(fx->orders);
    kv_destroy(fx->kv);
    pthread_mutex_destroy(&fx->lock);
    free(fx);
    return 0;
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/cloudpacs-disp-XXXXXX");
    if (mkdtemp(g_dir) == NULL)
        return -1;
    snprintf(g_sock, sizeof g_sock, "%s/redis.sock", g_dir);
    g_redis = start_redis();
    if (g_redis <= 0 || build_directory() != 0)
        return -1;
    principals();

    {
        char url[160];
        kv_config kc = { 0 };
        kv *k = NULL;
        int up;

        snprintf(url, sizeof url, "unix://%s", g_sock);
        kc.url = url;
        if (kv_create(&kc, &k, NULL) != CP_OK)
            return -1;
        up = wait_up(k);
        kv_destroy(k);
        return up;
    }
}

static int group_teardown(void **state)
{
    char cmd[128];

    (void)state;
    directory_close(g_directory);
    if (g_redis > 0) {
        kill(g_redis, SIGTERM);
        waitpid(g_redis, NULL, 0);
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* --- helpers -------------------------------------------------------------- */

static order submit(fixture *fx, const char *uid, const char *mod, const char *bp,
                    order_priority prio, int64_t requesting, const char *patient)
{
    order o;

    memset(&o, 0, sizeof o);
    snprintf(o.study_uid, sizeof o.study_uid, "%s", uid);
    snprintf(o.patient_id, sizeof o.patient_id, "%s", patient);
    snprintf(o.issuer, sizeof o.issuer, "HIS");
    snprintf(o.modality, sizeof o.modality, "%s", mod);
    snprintf(o.body_part, sizeof o.body_part, "%s", bp);
    o.priority = prio;
    o.requesting_id = requesting;
    o.requested_by = requesting == g_clinic_a ? g_tech_a : g_tech_b;
    assert_int_equal(dispatch_submit(fx->d, &o, NULL), CP_OK);
    return o;
}

static order get(fixture *fx, int64_t id)
{
    order o;

    assert_int_equal(order_get(fx->orders, id, &o, NULL), CP_OK);
    return o;
}

static dispatch_grab_result grab(fixture *fx, who *w, int64_t id)
{
    dispatch_grab_result r = DISPATCH_GONE;

    assert_int_equal(dispatch_grab(fx->d, &w->p, id, &r, NULL, NULL), CP_OK);
    return r;
}

static unsigned tick(fixture *fx)
{
    unsigned fired = 0;

    assert_int_equal(dispatch_tick(fx->d, &fired, NULL), CP_OK);
    return fired;
}

typedef struct last_ev {
    order_event e;
} last_ev;

static cp_status keep_last(void *ctx, const order_event *e)
{
    ((last_ev *)ctx)->e = *e;
    return CP_OK;
}

static order_event last_event(fixture *fx, int64_t id)
{
    last_ev l;

    memset(&l, 0, sizeof l);
    assert_int_equal(order_history(fx->orders, id, keep_last, &l, NULL), CP_OK);
    return l.e;
}

static long long redis_num(fixture *fx, const char *cmd, const char *key, const char *arg)
{
    char full[128];
    kv_reply *r = NULL;
    long long v = 0;

    assert_int_equal(kv_key(fx->kv, full, sizeof full, key, NULL), CP_OK);
    if (arg != NULL)
        assert_int_equal(kv_commandv(fx->kv, &r, NULL, cmd, full, arg, (char *)NULL), CP_OK);
    else
        assert_int_equal(kv_commandv(fx->kv, &r, NULL, cmd, full, (char *)NULL), CP_OK);
    if (r->type == KV_REPLY_INTEGER)
        v = r->integer;
    else if (r->type == KV_REPLY_STRING)
        v = strtoll(r->str, NULL, 10);
    kv_reply_free(r);
    return v;
}

static long long load_of(fixture *fx, int64_t doc)
{
    char k[64];

    snprintf(k, sizeof k, "disp:load:%lld", (long long)doc);
    return redis_num(fx, "GET", k, NULL);
}

/* --- the tests ------------------------------------------------------------ */

static void test_rules(void **state)
{
    dispatch_rules r;
    cp_config *cfg = NULL;
    static const char text[] =
        "[dispatch]\ndeadline_urgent_minutes = 20\ncap_units = 8\n"
        "weights = CR:1,CT:5,OPT:2,*:3\n"
        "deadline_CT_routine_minutes = 60\ndeadline_OPT_urgent_minutes = 15\n";
    static const char bad[] = "[dispatch]\nweights = CR:one\n";

    (void)state;
    dispatch_rules_default(&r);
    assert_int_equal(r.deadline_s[ORDER_ROUTINE], 7200);
    assert_int_equal(r.cap_units, 6);
    assert_int_equal(dispatch_weight(&r, "CT"), 3);
    assert_int_equal(dispatch_weight(&r, "MR"), 4);
    assert_int_equal(dispatch_weight(&r, "US"), 2);
    assert_int_equal(dispatch_weight(&r, "cr"), 1);

    assert_int_equal(cp_config_parse(text, strlen(text), &cfg, NULL), CP_OK);
    assert_int_equal(dispatch_rules_from_config(cfg, &r, NULL), CP_OK);
    assert_int_equal(r.deadline_s[ORDER_URGENT], 1200);
    assert_int_equal(r.deadline_s[ORDER_ROUTINE], 7200);
    assert_int_equal(r.cap_units, 8);
    assert_int_equal(dispatch_weight(&r, "CT"), 5);
    assert_int_equal(dispatch_weight(&r, "XA"), 3);
    assert_int_equal(r.override_count, 2);
    assert_string_equal(r.overrides[0].modality, "CT");
    assert_int_equal(r.overrides[0].deadline_s, 3600);
    assert_string_equal(r.overrides[1].modality, "OPT");
    assert_int_equal(r.overrides[1].priority, ORDER_URGENT);
    assert_int_equal(r.overrides[1].deadline_s, 900);
    cp_config_destroy(cfg);

    cfg = NULL;
    assert_int_equal(cp_config_parse(bad, strlen(bad), &cfg, NULL), CP_OK);
    assert_int_equal(dispatch_rules_from_config(cfg, &r, NULL), CP_ERR_CONFIG);
    cp_config_destroy(cfg);
}

static void test_submit_pools(void **state)
{
    fixture *fx = *state;
    int64_t t0 = test_now();
    order a = submit(fx, "1.1", "CR", "CHEST", ORDER_ROUTINE, g_clinic_a, "P1");
    order b = submit(fx, "1.2", "CT", "HEAD", ORDER_URGENT, g_clinic_a, "P2");
    order c = submit(fx, "1.3", "MR", "HEAD", ORDER_ROUTINE, g_clinic_a, "P3");

    assert_int_equal(a.state, ORDER_POOLED);
    assert_int_equal(a.weight, 1);
    assert_int_equal(a.deadline_us, t0 + 7200 * S);
    assert_int_equal(a.pooled_us, t0);
    assert_int_equal(b.weight, 3);
    assert_int_equal(b.deadline_us, t0 + 1800 * S);
    assert_int_equal(c.deadline_us, t0 + 14400 * S);
    assert_int_equal(get(fx, a.id).state, ORDER_POOLED);
    assert_int_equal(redis_num(fx, "ZCARD", "disp:pool", NULL), 3);
    assert_int_equal(count_events(fx, DISPATCH_EVENT_POOLED, "pooled", 0), 3);
    assert_true(count_events(fx, DISPATCH_EVENT_STATUS, NULL, a.id) >= 2);

    /* A study ordered twice while open is refused. */
    {
        order dup;

        memset(&dup, 0, sizeof dup);
        snprintf(dup.study_uid, sizeof dup.study_uid, "1.1");
        snprintf(dup.modality, sizeof dup.modality, "CR");
        dup.requesting_id = g_clinic_a;
        assert_int_equal(dispatch_submit(fx->d, &dup, NULL), CP_ERR_EXISTS);
    }
}

static void test_visible(void **state)
{
    fixture *fx = *state;
    order out[16];
    size_t n = 0;
    order old, fresh;
    char uid[32];

    old = submit(fx, "2.1", "CT", "CHEST", ORDER_ROUTINE, g_clinic_a, "P1");
    advance(6000 * S);
    fresh = submit(fx, "2.2", "CT", "HEAD", ORDER_URGENT, g_clinic_a, "P2");
    submit(fx, "2.3", "CT", "CHEST", ORDER_ROUTINE, g_clinic_b, "P3");   /* no contract */
    submit(fx, "2.4", "MR", "HEAD", ORDER_ROUTINE, g_clinic_a, "P4");    /* not qualified */
    submit(fx, "2.5", "CR", "HAND", ORDER_ROUTINE, g_clinic_a, "P5");    /* not qualified */
    for (int i = 0; i < 6; i++) {
        snprintf(uid, sizeof uid, "2.9.%d", i);
        advance(S);
        submit(fx, uid, "CR", "CHEST", ORDER_ROUTINE, g_clinic_a, "P9");
    }

    assert_int_equal(dispatch_visible(fx->d, &g_p1.p, out, 16, &n, NULL), CP_OK);
    assert_int_equal(n, 5);

    /* The routine order that waited 100 minutes is due before the fresh urgent one. */
    assert_int_equal(out[0].id, old.id);
    assert_int_equal(out[1].id, fresh.id);
    for (size_t i = 1; i < n; i++)
        assert_true(out[i - 1].deadline_us <= out[i].deadline_us);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(out[i].requesting_id, g_clinic_a);
        assert_string_not_equal(out[i].modality, "MR");
        assert_string_not_equal(out[i].body_part, "HAND");
    }

    /* doc3 sees only the MR head; doc4 (no contract) and the technician nothing. */
    assert_int_equal(dispatch_visible(fx->d, &g_p3.p, out, 16, &n, NULL), CP_OK);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].modality, "MR");
    assert_int_equal(dispatch_visible(fx->d, &g_p4.p, out, 16, &n, NULL), CP_OK);
    assert_int_equal(n, 0);
    assert_int_equal(dispatch_visible(fx->d, &g_pa.p, out, 16, &n, NULL), CP_OK);
    assert_int_equal(n, 0);
    assert_int_equal(dispatch_visible(fx->d, &g_p1.p, out, 2, &n, NULL), CP_OK);
    assert_int_equal(n, 2);
}

typedef struct race {
    fixture *fx;
    int64_t order_id;
    pthread_barrier_t *barrier;
    who *w;
    dispatch *d;
    dispatch_grab_result result;
    cp_status st;
    double seconds;
} race;

static void *race_main(void *arg)
{
    race *r = arg;

    double t0;

    pthread_barrier_wait(r->barrier);
    t0 = mono_s();
    r->st = dispatch_grab(r->d, &r->w->p, r->order_id, &r->result, NULL, NULL);
    r->seconds = mono_s() - t0;
    return NULL;
}

#define RACERS 200

static void test_grab_race(void **state)
{
    fixture *fx = *state;
    static race r[RACERS];
    pthread_t th[RACERS];
    pthread_barrier_t barrier;
    dispatch *engines[4];
    order o, got;
    size_t won = 0, gone = 0, winner = 0;
    double t0, t1, single = 0;

    for (int e = 0; e < 4; e++) {
        dispatch_config c = engine_config(fx, "racer");

        assert_int_equal(dispatch_create(&c, &engines[e], NULL), CP_OK);
    }

    /* One uncontended grab first, to time it (information, not asserted). */
    for (int i = 0; i < 20; i++) {
        char uid[32];
        dispatch_grab_result res;

        snprintf(uid, sizeof uid, "3.0.%d", i);
        o = submit(fx, uid, "CR", "CHEST", ORDER_ROUTINE, g_clinic_b, "PX");
        t0 = mono_s();
        assert_int_equal(dispatch_grab(fx->d, &g_p2.p, o.id, &res, NULL, NULL), CP_OK);
        single += mono_s() - t0;
        assert_int_equal(res, DISPATCH_GRABBED);
        assert_int_equal(dispatch_give_back(fx->d, &g_p2.p, o.id, "timing only", NULL),
                         CP_OK);
    }
    printf("info: uncontended grab %.3f ms (mean of 20)\n", single / 20 * 1000);

    /* The same path refused by the script (cool-down): Redis only, no SQL commit. */
    single = 0;
    for (int i = 0; i < 20; i++) {
        dispatch_grab_result res;

        t0 = mono_s();
        assert_int_equal(dispatch_grab(fx->d, &g_p2.p, o.id - i, &res, NULL, NULL), CP_OK);
        single += mono_s() - t0;
        assert_int_equal(res, DISPATCH_NOT_ELIGIBLE);
    }
    printf("info: grab refused by the script %.3f ms (mean of 20)\n", single / 20 * 1000);

    o = submit(fx, "3.1", "CR", "CHEST", ORDER_ROUTINE, g_clinic_a, "P1");
    pthread_barrier_init(&barrier, NULL, RACERS);
    for (size_t i = 0; i < RACERS; i++) {
        r[i].fx = fx;
        r[i].order_id = o.id;
        r[i].barrier = &barrier;
        r[i].w = i % 2 == 0 ? &g_p1 : &g_p2;
        r[i].d = engines[i % 4];
        r[i].result = DISPATCH_NOT_ELIGIBLE;
        assert_int_equal(pthread_create(&th[i], NULL, race_main, &r[i]), 0);
    }
    t0 = mono_s();
    for (size_t i = 0; i < RACERS; i++)
        pthread_join(th[i], NULL);
    t1 = mono_s();
    pthread_barrier_destroy(&barrier);

    for (size_t i = 0; i < RACERS; i++) {
        assert_int_equal(r[i].st, CP_OK);
        if (r[i].result == DISPATCH_GRABBED) {
            won++;
            winner = i;
        } else if (r[i].result == DISPATCH_GONE) {
            gone++;
        }
    }
    {
        double worst = 0, sum = 0;

        for (size_t i = 0; i < RACERS; i++) {
            sum += r[i].seconds;
            if (r[i].seconds > worst)
                worst = r[i].seconds;
        }
        printf("info: %d grabs of one order by 4 engines: %.1f ms in all; per grab "
               "mean %.2f ms, worst %.2f ms; the winner %.2f ms\n", RACERS,
               (t1 - t0) * 1000, sum / RACERS * 1000, worst * 1000,
               r[winner].seconds * 1000);
    }
    assert_int_equal(won, 1);
    assert_int_equal(gone, RACERS - 1);
    got = get(fx, o.id);
    assert_int_equal(got.state, ORDER_CLAIMED);
    assert_int_equal(got.doctor_id, r[winner].w->p.id);
    assert_int_equal(got.reading_id, g_centre);
    assert_int_equal(load_of(fx, r[winner].w->p.id), 1);
    assert_int_equal(redis_num(fx, "ZCARD", "disp:pool", NULL), 20);
    for (int e = 0; e < 4; e++)
        dispatch_destroy(engines[e]);
}

static void test_cap(void **state)
{
    fixture *fx = *state;
    order a = submit(fx, "4.1", "CT", "CHEST", ORDER_ROUTINE, g_clinic_a, "P1");
    order b = submit(fx, "4.2", "CT", "HEAD", ORDER_ROUTINE, g_clinic_a, "P2");
    order c = submit(fx, "4.3", "CR", "CHEST", ORDER_ROUTINE, g_clinic_a, "P3");
    order out[8];
    size_t n = 9;

    assert_int_equal(grab(fx, &g_p1, a.id), DISPATCH_GRABBED);
    assert_int_equal(grab(fx, &g_p1, b.id), DISPATCH_GRABBED);
    assert_int_equal(load_of(fx, g_doc1), 6);
    assert_int_equal(grab(fx, &g_p1, c.id), DISPATCH_OVER_CAP);
    assert_int_equal(get(fx, c.id).state, ORDER_POOLED);
    assert_int_equal(dispatch_visible(fx->d, &g_p1.p, out, 8, &n, NULL), CP_OK);
    assert_int_equal(n, 0);
    assert_int_equal(grab(fx, &g_p2, c.id), DISPATCH_GRABBED);
    assert_int_equal(grab(fx, &g_p2, c.id), DISPATCH_GONE);

    /* Under a cap of 2, an order of 3 units still goes to a doctor holding nothing. */
    {
        dispatch_config cfg = engine_config(fx, "small-cap");
        dispatch *small = NULL;
        order big = submit(fx, "4.4", "CT", "CHEST", ORDER_ROUTINE, g_clinic_a, "P4");
        order cr = submit(fx, "4.5", "CR", "CHEST", ORDER_ROUTINE, g_clinic_a, "P5");
        dispatch_grab_result r;

        cfg.rules.cap_units = 2;
        assert_int_equal(dispatch_create(&cfg, &small, NULL), CP_OK);
        assert_int_equal(dispatch_give_back(fx->d, &g_p2.p, c.id, "make room", NULL), CP_OK);
        assert_int_equal(dispatch_grab(small, &g_p2.p, big.id, &r, NULL, NULL), CP_OK);
        assert_int_equal(r, DISPATCH_GRABBED);
        assert_int_equal(dispatch_grab(small, &g_p2.p, cr.id, &r, NULL, NULL), CP_OK);
        assert_int_equal(r, DISPATCH_OVER_CAP);
        dispatch_destroy(small);
    }
}

/* SQL refuses what the script did (the order moved behind Redis): the claim is undone. */
static void test_undo(void **state)
{
    fixture *fx = *state;
    order o = submit(fx, "4.9", "CT", "CHEST", ORDER_ROUTINE, g_clinic_a, "P1"), sql;
    order p = submit(fx, "4.10", "CT", "CHEST", ORDER_ROUTINE, g_clinic_a, "P2");

    /* Cancelled in SQL only: Redis still shows it pooled. */
    sql = get(fx, o.id);
    sql.state = ORDER_CANCELLED;
    assert_int_equal(order_transition(fx->orders, &sql, ORDER_POOLED, "cancelled", 0, "",
                                      NULL), CP_OK);
    assert_int_equal(redis_num(fx, "ZCARD", "disp:pool", NULL), 2);
    assert_int_equal(grab(fx, &g_p1, o.id), DISPATCH_GONE);
    assert_int_equal(get(fx, o.id).state, ORDER_CANCELLED);
    assert_int_equal(load_of(fx, g_doc1), 0);
    assert_int_equal(redis_num(fx, "ZCARD", "disp:pool", NULL), 1);
    {
        char k[64];

        snprintf(k, sizeof k, "disp:claims:%lld", (long long)g_doc1);
        assert_int_equal(redis_num(fx, "SCARD", k, NULL), 0);
    }

    /* Grabbed in SQL behind Redis's back: the grab loses and Redis learns the truth. */
    sql = get(fx, p.id);
    sql.state = ORDER_CLAIMED;
    sql.doctor_id = g_doc2;
    sql.claimed_us = test_now();
    assert_int_equal(order_transition(fx->orders, &sql, ORDER_POOLED, "grabbed", g_doc2, "",
                                      NULL), CP_OK);
    assert_int_equal(grab(fx, &g_p1, p.id), DISPATCH_GONE);
    assert_int_equal(get(fx, p.id).doctor_id, g_doc2);
    assert_int_equal(load_of(fx, g_doc1), 0);
    assert_int_equal(load_of(fx, g_doc2), 3);
    assert_int_equal(redis_num(fx, "ZCARD", "disp:pool", NULL), 0);

    /* Its open lease was recomputed too. */
    advance(301 * S);
    tick(fx);
    assert_int_equal(get(fx, p.id).state, ORDER_POOLED);
}

static void test_not_eligible(void **state)
{
    fixture *fx = *state;
    order ct = submit(fx, "5.1", "CT", "CHEST", ORDER_ROUTINE, g_clinic_a, "P1");
    order b = submit(fx, "5.2", "CT", "CHEST", ORDER_ROUTINE, g_clinic_b, "P2");

    assert_int_equal(grab(fx, &g_p3, ct.id), DISPATCH_NOT_ELIGIBLE);    /* qualification */
    assert_int_equal(grab(fx, &g_p4, ct.id), DISPATCH_NOT_ELIGIBLE);    /* contract */
    assert_int_equal(grab(fx, &g_pa, ct.id), DISPATCH_NOT_ELIGIBLE);    /* role */
    assert_int_equal(grab(fx, &g_p1, b.id), DISPATCH_NOT_ELIGIBLE);     /* clinic B */
    assert_false(dispatch_eligible(fx->d, &g_p1.p, &b));
    assert_true(dispatch_eligible(fx->d, &g_p2.p, &b));
    assert_int_equal(get(fx, ct.id).state, ORDER_POOLED);
    assert_int_equal(grab(fx, &g_p1, 999999), DISPATCH_GONE);
}

static void test_give_back_cooldown(void **state)
{
    fixture *fx = *state;
    order o = submit(fx, "6.1", "CT", "CHEST", ORDER_ROUTINE, g_clinic_a, "P1"), got;
    order_event e;

    advance(30 * S);
    assert_int_equal(grab(fx, &g_p1, o.id), DISPATCH_GRABBED);
    assert_int_equal(dispatch_give_back(fx->d, &g_p2.p, o.id, "not mine", NULL),
                     CP_ERR_FORBIDDEN);
    assert_int_equal(dispatch_give_back(fx->d, &g_p1.p, o.id, "", NULL), CP_ERR_INVALID);
    advance(10 * S);
    assert_int_equal(dispatch_give_back(fx->d, &g_p1.p, o.id, "conflict of interest", NULL),
                     CP_OK);
    got = get(fx, o.id);
    assert_int_equal(got.state, ORDER_POOLED);
    assert_int_equal(got.pooled_us, o.pooled_us);
    assert_int_equal(got.deadline_us, o.deadline_us);
    assert_int_equal(got.returns, 1);
    assert_int_equal(got.doctor_id, 0);
    e = last_event(fx, o.id);
    assert_string_equal(e.event, "given_back");
    assert_string_equal(e.reason, "conflict of interest");
    assert_int_equal(load_of(fx, g_doc1), 0);

    assert_int_equal(grab(fx, &g_p1, o.id), DISPATCH_NOT_ELIGIBLE);
    advance(601 * S);
    assert_int_equal(grab(fx, &g_p2, o.id), DISPATCH_GRABBED);
}

static void test_open_lease_and_escalation(void **state)
{
    fixture *fx = *state;
    order o = submit(fx, "7.1", "CT", "CHEST", ORDER_ROUTINE, g_clinic_a, "P1"), got;

    assert_int_equal(grab(fx, &g_p1, o.id), DISPATCH_GRABBED);
    advance(299 * S);
    tick(fx);
    assert_int_equal(get(fx, o.id).state, ORDER_CLAIMED);
    advance(2 * S);
    assert_true(tick(fx) >= 1);
    got = get(fx, o.id);
    assert_int_equal(got.state, ORDER_POOLED);
    assert_int_equal(got.returns, 1);
    assert_string_equal(last_event(fx, o.id).event, "lapsed");
    assert_int_equal(load_of(fx, g_doc1), 0);

    /* Opened in time: the report lease escalates once, then sends it back. */
    assert_int_equal(grab(fx, &g_p2, o.id), DISPATCH_GRABBED);
    advance(60 * S);
    assert_int_equal(dispatch_open(fx->d, &g_p1.p, o.id, NULL), CP_ERR_FORBIDDEN);
    assert_int_equal(dispatch_open(fx->d, &g_p2.p, o.id, NULL), CP_OK);
    advance(300 * S);
    tick(fx);
    assert_int_equal(get(fx, o.id).state, ORDER_CLAIMED);
    advance(3600 * S);
    tick(fx);
    assert_int_equal(get(fx, o.id).state, ORDER_CLAIMED);
    assert_string_equal(last_event(fx, o.id).event, "escalated");
    assert_int_equal(count_events(fx, DISPATCH_EVENT_ALERT, "escalated", o.id), 1);
    advance(3601 * S);
    tick(fx);
    got = get(fx, o.id);
    assert_int_equal(got.state, ORDER_POOLED);
    assert_int_equal(got.returns, 2);
}

static void test_assign_answer(void **state)
{
    fixture *fx = *state;
    order a = submit(fx, "8.1", "CT", "CHEST", ORDER_ROUTINE, g_clinic_a, "P1");
    order b = submit(fx, "8.2", "CT", "CHEST", ORDER_ROUTINE, g_clinic_a, "P2");
    order c = submit(fx, "8.3", "CT", "CHEST", ORDER_ROUTINE, g_clinic_a, "P3");
    order_event e;

    assert_int_equal(dispatch_assign(fx->d, &g_pa.p, a.id, g_doc2, NULL), CP_ERR_FORBIDDEN);
    assert_int_equal(dispatch_assign(fx->d, &g_padmin.p, a.id, g_doc3, NULL),
                     CP_ERR_FORBIDDEN);
    assert_int_equal(dispatch_assign(fx->d, &g_padmin.p, a.id, g_doc2, NULL), CP_OK);
    assert_int_equal(get(fx, a.id).state, ORDER_OFFERED);
    assert_int_equal(count_events(fx, DISPATCH_EVENT_OFFER, NULL, a.id), 1);
    assert_int_equal(grab(fx, &g_p1, a.id), DISPATCH_GONE);
    assert_int_equal(dispatch_answer(fx->d, &g_p1.p, a.id, true, NULL, NULL),
                     CP_ERR_FORBIDDEN);
    assert_int_equal(dispatch_answer(fx->d, &g_p2.p, a.id, true, NULL, NULL), CP_OK);
    assert_int_equal(get(fx, a.id).state, ORDER_CLAIMED);
    assert_int_equal(get(fx, a.id).doctor_id, g_doc2);
    assert_int_equal(load_of(fx, g_doc2), 3);

    assert_int_equal(dispatch_assign(fx->d, &g_padmin.p, b.id, g_doc1, NULL), CP_OK);
    assert_int_equal(dispatch_answer(fx->d, &g_p1.p, b.id, false, "on leave", NULL), CP_OK);
    assert_int_equal(get(fx, b.id).state, ORDER_POOLED);
    e = last_event(fx, b.id);
    assert_string_equal(e.event, "declined");
    assert_string_equal(e.reason, "on leave");
    assert_int_equal(grab(fx, &g_p1, b.id), DISPATCH_NOT_ELIGIBLE);

    assert_int_equal(dispatch_assign(fx->d, &g_padmin.p, c.id, g_doc1, NULL), CP_OK);
    advance(119 * S);
    tick(fx);
    assert_int_equal(get(fx, c.id).state, ORDER_OFFERED);
    advance(2 * S);
    tick(fx);
    assert_int_equal(get(fx, c.id).state, ORDER_POOLED);
    e = last_event(fx, c.id);
    assert_string_equal(e.event, "declined");
    assert_string_equal(e.reason, "no answer");
}

static void test_fallback(void **state)
{
    fixture *fx = *state;
    order held = submit(fx, "9.0", "CT", "CHEST", ORDER_ROUTINE, g_clinic_a, "P0");
    order o, got;

    assert_int_equal(grab(fx, &g_p1, held.id), DISPATCH_GRABBED);
    assert_int_equal(dispatch_open(fx->d, &g_p1.p, held.id, NULL), CP_OK);
    o = submit(fx, "9.1", "CT", "HEAD", ORDER_ROUTINE, g_clinic_a, "P1");

    /* doc1 holds 3 units, doc2 none; doc4 is on duty but may not read it. */
    assert_int_equal(dispatch_set_duty(fx->d, g_doc1, test_now() + 7200 * S, NULL), CP_OK);
    assert_int_equal(dispatch_set_duty(fx->d, g_doc2, test_now() + 7200 * S, NULL), CP_OK);
    assert_int_equal(dispatch_set_duty(fx->d, g_doc4, test_now() + 7200 * S, NULL), CP_OK);
    assert_int_equal(dispatch_heartbeat(fx->d, &g_p4.p, NULL), CP_OK);
    advance(590 * S);
    assert_int_equal(dispatch_heartbeat(fx->d, &g_p1.p, NULL), CP_OK);
    assert_int_equal(dispatch_heartbeat(fx->d, &g_p2.p, NULL), CP_OK);
    tick(fx);
    assert_int_equal(get(fx, o.id).state, ORDER_POOLED);
    advance(11 * S);
    tick(fx);
    got = get(fx, o.id);
    assert_int_equal(got.state, ORDER_CLAIMED);
    assert_int_equal(got.doctor_id, g_doc2);
    assert_string_equal(last_event(fx, o.id).event, "auto_assigned");

    /* Nobody online and on duty: an alert, and another a minute later. */
    o = submit(fx, "9.2", "CT", "HEAD", ORDER_ROUTINE, g_clinic_a, "P2");
    assert_int_equal(dispatch_offline(fx->d, g_doc1, NULL), CP_OK);
    assert_int_equal(dispatch_set_duty(fx->d, g_doc2, 0, NULL), CP_OK);
    advance(601 * S);
    tick(fx);
    assert_int_equal(get(fx, o.id).state, ORDER_POOLED);
    assert_int_equal(count_events(fx, DISPATCH_EVENT_ALERT, "unassigned", o.id), 1);
    advance(61 * S);
    assert_int_equal(dispatch_heartbeat(fx->d, &g_p1.p, NULL), CP_OK);
    tick(fx);
    assert_int_equal(get(fx, o.id).doctor_id, g_doc1);
}

/*
 * Nobody online has room: the order waits, with alerts, until
 * fallback_percent of its deadline window; then the on-duty reader takes it
 * past the cap.
 */
static void test_fallback_past_cap(void **state)
{
    fixture *fx = *state;
    order a = submit(fx, "9.5", "CT", "CHEST", ORDER_ROUTINE, g_clinic_a, "Q1");
    order b = submit(fx, "9.6", "CT", "CHEST", ORDER_ROUTINE, g_clinic_a, "Q2");
    order o, got;

    assert_int_equal(grab(fx, &g_p1, a.id), DISPATCH_GRABBED);
    assert_int_equal(grab(fx, &g_p1, b.id), DISPATCH_GRABBED);
    assert_int_equal(dispatch_open(fx->d, &g_p1.p, a.id, NULL), CP_OK);
    assert_int_equal(dispatch_open(fx->d, &g_p1.p, b.id, NULL), CP_OK);
    o = submit(fx, "9.7", "CT", "HEAD", ORDER_ROUTINE, g_clinic_a, "Q3");
    assert_int_equal(dispatch_set_duty(fx->d, g_doc1, test_now() + 7200 * S, NULL), CP_OK);

    /* The grab window closes: doc1 is full, nobody else is online. */
    advance(601 * S);
    assert_int_equal(dispatch_heartbeat(fx->d, &g_p1.p, NULL), CP_OK);
    tick(fx);
    assert_int_equal(get(fx, o.id).state, ORDER_POOLED);
    assert_true(count_events(fx, DISPATCH_EVENT_ALERT, "unassigned", o.id) >= 1);

    /* 60% of the two hours: the duty reader takes it, over the cap. */
    advance((4320 - 601) * S);
    assert_int_equal(dispatch_heartbeat(fx->d, &g_p1.p, NULL), CP_OK);
    tick(fx);
    got = get(fx, o.id);
    assert_int_equal(got.state, ORDER_CLAIMED);
    assert_int_equal(got.doctor_id, g_doc1);
    assert_string_equal(last_event(fx, o.id).event, "fallback");
}

/* Both doctors online, each reading one order with another queued behind it. */
static void two_busy_doctors(fixture *fx, const char *prefix)
{
    static const char *const mods[4] = { "CT", "CR", "CT", "CR" };
    char uid[32], pat[16];

    for (int i = 0; i < 4; i++) {
        who *w = i < 2 ? &g_p1 : &g_p2;
        order o;

        snprintf(uid, sizeof uid, "%s.%d", prefix, i);
        snprintf(pat, sizeof pat, "B%s%d", prefix, i);
        o = submit(fx, uid, mods[i], "CHEST", ORDER_ROUTINE, g_clinic_a, pat);
        assert_int_equal(grab(fx, w, o.id), DISPATCH_GRABBED);
        assert_int_equal(dispatch_open(fx->d, &w->p, o.id, NULL), CP_OK);
    }
}

static void beat(fixture *fx)
{
    assert_int_equal(dispatch_heartbeat(fx->d, &g_p1.p, NULL), CP_OK);
    assert_int_equal(dispatch_heartbeat(fx->d, &g_p2.p, NULL), CP_OK);
}

/*
 * Past its grab window an order is not handed to a doctor who already has
 * work queued (it would wait behind it while the pool may reach a doctor
 * who is free sooner): it stays in the pool, without alerts while doctors
 * have room, until its latest start (deadline less the margin, the
 * least-loaded doctor's work and its own read), when the doctor who would
 * begin it first takes it.
 */
static void test_deadline_assigned(void **state)
{
    fixture *fx = *state;
    order o, got;

    two_busy_doctors(fx, "11");
    beat(fx);
    o = submit(fx, "11.9", "CR", "CHEST", ORDER_ROUTINE, g_clinic_a, "D1");

    /* Each holds 4 units (3 + 1): latest start 7200 - 900 - (4 + 1) * 300 = 4800 s. */
    for (int64_t at = 600; at < 4800; at += 600) {
        advance(600 * S);
        beat(fx);
        tick(fx);
        assert_int_equal(get(fx, o.id).state, ORDER_POOLED);
    }
    assert_int_equal(count_events(fx, DISPATCH_EVENT_ALERT, "unassigned", o.id), 0);
    advance(601 * S);
    beat(fx);
    tick(fx);
    got = get(fx, o.id);
    assert_int_equal(got.state, ORDER_CLAIMED);
    assert_int_equal(got.doctor_id, g_doc1);
    assert_string_equal(last_event(fx, o.id).event, "deadline_assigned");
}

/*
 * An urgent order forced at the end of its grab window goes to the doctor
 * whose read under way ends first, by the time since it was opened: doc2
 * opened a CT 981 s ago (about done), doc1 one 181 s ago (most of it
 * left). Both hold the same units and claims, which alone named doc1.
 */
static void test_forced_to_nearly_done(void **state)
{
    fixture *fx = *state;
    order a2 = submit(fx, "14.1", "CT", "CHEST", ORDER_ROUTINE, g_clinic_a, "F1");
    order b2 = submit(fx, "14.2", "CR", "CHEST", ORDER_ROUTINE, g_clinic_a, "F2");
    order a1, b1, o, got;

    assert_int_equal(grab(fx, &g_p2, a2.id), DISPATCH_GRABBED);
    assert_int_equal(grab(fx, &g_p2, b2.id), DISPATCH_GRABBED);
    assert_int_equal(dispatch_open(fx->d, &g_p2.p, a2.id, NULL), CP_OK);
    assert_int_equal(dispatch_open(fx->d, &g_p2.p, b2.id, NULL), CP_OK);
    advance(800 * S);
    a1 = submit(fx, "14.3", "CT", "CHEST", ORDER_ROUTINE, g_clinic_a, "F3");
    b1 = submit(fx, "14.4", "CR", "CHEST", ORDER_ROUTINE, g_clinic_a, "F4");
    assert_int_equal(grab(fx, &g_p1, a1.id), DISPATCH_GRABBED);
    assert_int_equal(grab(fx, &g_p1, b1.id), DISPATCH_GRABBED);
    assert_int_equal(dispatch_open(fx->d, &g_p1.p, a1.id, NULL), CP_OK);
    assert_int_equal(dispatch_open(fx->d, &g_p1.p, b1.id, NULL), CP_OK);
    beat(fx);
    o = submit(fx, "14.9", "CR", "CHEST", ORDER_URGENT, g_clinic_a, "F9");

    /* Latest start 1800 - 900 - (4 + 1) * 300 s has passed: forced at once. */
    advance(181 * S);
    beat(fx);
    tick(fx);
    got = get(fx, o.id);
    assert_int_equal(got.state, ORDER_CLAIMED);
    assert_int_equal(got.doctor_id, g_doc2);
    assert_string_equal(last_event(fx, o.id).event, "deadline_assigned");
}

/* A doctor reading one order and holding nothing behind it takes the next at once. */
static void test_next_order_to_a_reader(void **state)
{
    fixture *fx = *state;
    order a = submit(fx, "12.1", "CT", "CHEST", ORDER_ROUTINE, g_clinic_a, "N1");
    order b = submit(fx, "12.2", "CR", "CHEST", ORDER_ROUTINE, g_clinic_a, "N2");
    order c = submit(fx, "12.3", "CT", "CHEST", ORDER_ROUTINE, g_clinic_a, "N3");
    order o, got;

    assert_int_equal(grab(fx, &g_p1, a.id), DISPATCH_GRABBED);
    assert_int_equal(grab(fx, &g_p1, b.id), DISPATCH_GRABBED);
    assert_int_equal(grab(fx, &g_p2, c.id), DISPATCH_GRABBED);
    assert_int_equal(dispatch_open(fx->d, &g_p1.p, a.id, NULL), CP_OK);
    assert_int_equal(dispatch_open(fx->d, &g_p1.p, b.id, NULL), CP_OK);
    assert_int_equal(dispatch_open(fx->d, &g_p2.p, c.id, NULL), CP_OK);
    o = submit(fx, "12.9", "CR", "CHEST", ORDER_ROUTINE, g_clinic_a, "N9");
    advance(601 * S);
    beat(fx);
    tick(fx);
    got = get(fx, o.id);
    assert_int_equal(got.state, ORDER_CLAIMED);
    assert_int_equal(got.doctor_id, g_doc2);
    assert_string_equal(last_event(fx, o.id).event, "auto_assigned");
}

static void test_deadline_alert(void **state)
{
    fixture *fx = *state;
    order o = submit(fx, "10.1", "CR", "CHEST", ORDER_ROUTINE, g_clinic_a, "P1");
    order u = submit(fx, "10.2", "CT", "HEAD", ORDER_URGENT, g_clinic_a, "P2");

    assert_int_equal(grab(fx, &g_p2, u.id), DISPATCH_GRABBED);
    assert_int_equal(dispatch_open(fx->d, &g_p2.p, u.id, NULL), CP_OK);
    advance(1439 * S);
    tick(fx);
    assert_int_equal(count_events(fx, DISPATCH_EVENT_ALERT, "deadline_near", u.id), 0);
    advance(2 * S);
    tick(fx);
    assert_int_equal(count_events(fx, DISPATCH_EVENT_ALERT, "deadline_near", u.id), 1);
    advance(5760 * S);
    tick(fx);
    tick(fx);
    assert_int_equal(count_events(fx, DISPATCH_EVENT_ALERT, "deadline_near", o.id), 1);
    assert_int_equal(count_events(fx, DISPATCH_EVENT_ALERT, "deadline_near", u.id), 1);
}

static void test_affinity(void **state)
{
    fixture *fx = *state;
    order a = submit(fx, "11.1", "CT", "CHEST", ORDER_ROUTINE, g_clinic_a, "PAT");
    order b = submit(fx, "11.2", "CR", "CHEST", ORDER_ROUTINE, g_clinic_a, "PAT");
    order x = submit(fx, "11.3", "CR", "CHEST", ORDER_ROUTINE, g_clinic_a, "OTHER");
    order c, got;

    assert_int_equal(grab(fx, &g_p1, a.id), DISPATCH_GRABBED);
    got = get(fx, b.id);
    assert_int_equal(got.state, ORDER_CLAIMED);
    assert_int_equal(got.doctor_id, g_doc1);
    assert_string_equal(last_event(fx, b.id).event, "affinity");
    assert_int_equal(get(fx, x.id).state, ORDER_POOLED);
    assert_int_equal(load_of(fx, g_doc1), 4);

    c = submit(fx, "11.4", "CT", "CHEST", ORDER_ROUTINE, g_clinic_a, "PAT");
    assert_int_equal(c.state, ORDER_CLAIMED);
    assert_int_equal(c.doctor_id, g_doc1);
    assert_int_equal(load_of(fx, g_doc1), 7);

    /* The same patient id at another clinic is another patient. */
    c = submit(fx, "11.5", "CT", "CHEST", ORDER_ROUTINE, g_clinic_b, "PAT");
    assert_int_equal(c.state, ORDER_POOLED);
}

static void test_cancel(void **state)
{
    fixture *fx = *state;
    order a = submit(fx, "12.1", "CT", "CHEST", ORDER_ROUTINE, g_clinic_a, "P1");
    order b = submit(fx, "12.2", "CT", "CHEST", ORDER_ROUTINE, g_clinic_a, "P2");
    order c = submit(fx, "12.3", "CT", "CHEST", ORDER_ROUTINE, g_clinic_a, "P3");

    assert_int_equal(dispatch_cancel(fx->d, &g_pb.p, a.id, "wrong", NULL), CP_ERR_FORBIDDEN);
    assert_int_equal(dispatch_cancel(fx->d, &g_pa.p, a.id, "duplicate", NULL), CP_OK);
    assert_int_equal(get(fx, a.id).state, ORDER_CANCELLED);
    assert_int_equal(grab(fx, &g_p1, a.id), DISPATCH_GONE);

    assert_int_equal(dispatch_assign(fx->d, &g_padmin.p, b.id, g_doc1, NULL), CP_OK);
    assert_int_equal(dispatch_cancel(fx->d, &g_pa.p, b.id, "not needed", NULL), CP_OK);
    assert_int_equal(get(fx, b.id).state, ORDER_CANCELLED);

    assert_int_equal(grab(fx, &g_p1, c.id), DISPATCH_GRABBED);
    assert_int_equal(dispatch_cancel(fx->d, &g_pa.p, c.id, "late", NULL), CP_ERR_INVALID);
    assert_int_equal(get(fx, c.id).state, ORDER_CLAIMED);
    assert_int_equal(redis_num(fx, "ZCARD", "disp:pool", NULL), 0);
}

static void test_after_report(void **state)
{
    fixture *fx = *state;
    order o = submit(fx, "13.1", "CT", "CHEST", ORDER_ROUTINE, g_clinic_a, "P1");

    assert_int_equal(grab(fx, &g_p1, o.id), DISPATCH_GRABBED);
    o = get(fx, o.id);
    assert_int_equal(load_of(fx, g_doc1), 3);
    o.state = ORDER_REPORTED;
    o.reported_us = test_now();
    assert_int_equal(order_transition(fx->orders, &o, ORDER_CLAIMED, "reported", g_doc1, "",
                                      NULL), CP_OK);
    assert_int_equal(dispatch_after_report(fx->d, &o, NULL), CP_OK);
    assert_int_equal(load_of(fx, g_doc1), 0);
    o.state = ORDER_RETURNED;
    assert_int_equal(order_transition(fx->orders, &o, ORDER_REPORTED, "rejected", g_doc2, "",
                                      NULL), CP_OK);
    assert_int_equal(dispatch_after_report(fx->d, &o, NULL), CP_OK);
    assert_int_equal(load_of(fx, g_doc1), 3);
}

static void test_timer_lease(void **state)
{
    fixture *fx = *state;
    dispatch_config c = engine_config(fx, "test-b");
    dispatch *b = NULL;
    order o;
    unsigned fired = 0;
    double t0;

    assert_int_equal(dispatch_create(&c, &b, NULL), CP_OK);
    o = submit(fx, "14.1", "CT", "CHEST", ORDER_ROUTINE, g_clinic_a, "P1");
    assert_int_equal(grab(fx, &g_p1, o.id), DISPATCH_GRABBED);

    tick(fx);
    assert_true(dispatch_is_leader(fx->d));
    assert_int_equal(dispatch_tick(b, &fired, NULL), CP_OK);
    assert_false(dispatch_is_leader(b));

    /* Only the leader fires: b sees the due lease and does nothing. */
    advance(301 * S);
    assert_int_equal(dispatch_tick(b, &fired, NULL), CP_OK);
    assert_int_equal(fired, 0);
    assert_int_equal(get(fx, o.id).state, ORDER_CLAIMED);

    /* The leader stops renewing: b takes over once the lease expired. */
    t0 = mono_s();
    while (!dispatch_is_leader(b) && mono_s() - t0 < 6) {
        sleep_ms(100);
        assert_int_equal(dispatch_tick(b, &fired, NULL), CP_OK);
    }
    assert_true(dispatch_is_leader(b));
    assert_true(mono_s() - t0 >= 0.5);
    printf("info: lease taken over after %.2f s\n", mono_s() - t0);
    assert_int_equal(get(fx, o.id).state, ORDER_POOLED);
    assert_false(dispatch_is_leader(fx->d));

    /* The background thread keeps the lease. */
    assert_int_equal(dispatch_start(b, NULL), CP_OK);
    sleep_ms(1500);
    assert_int_equal(dispatch_tick(fx->d, &fired, NULL), CP_OK);
    assert_false(dispatch_is_leader(fx->d));
    dispatch_stop(b);
    dispatch_destroy(b);

    /* Destroyed, b gave the lease up: a takes it at once. */
    tick(fx);
    assert_true(dispatch_is_leader(fx->d));
}

/* Everything rebuildable in Redis, as sorted text. */
static char *snapshot(fixture *fx)
{
    static const char script[] =
        "local P = ARGV[1]\n"
        "local keys = {}\n"
        "local cursor = '0'\n"
        "repeat\n"
        "  local r = redis.call('SCAN', cursor, 'MATCH', P..'*', 'COUNT', 1000)\n"
        "  cursor = r[1]\n"
        "  for _, k in ipairs(r[2]) do table.insert(keys, k) end\n"
        "until cursor == '0'\n"
        "table.sort(keys)\n"
        "local out = {}\n"
        "for _, k in ipairs(keys) do\n"
        "  local s = string.sub(k, #P + 1)\n"
        "  if s ~= 'leader' and s ~= 'epoch' and s ~= 'online' and s ~= 'duty' then\n"
        "    local t = redis.call('TYPE', k)['ok']\n"
        "    local v\n"
        "    if t == 'string' then v = {redis.call('GET', k)}\n"
        "    elseif t == 'set' then v = redis.call('SMEMBERS', k) table.sort(v)\n"
        "    elseif t == 'zset' then v = redis.call('ZRANGE', k, 0, -1, 'WITHSCORES')\n"
        "    elseif t == 'hash' then\n"
        "      local h = redis.call('HGETALL', k)\n"
        "      v = {}\n"
        "      for i = 1, #h, 2 do table.insert(v, h[i]..'='..h[i + 1]) end\n"
        "      table.sort(v)\n"
        "    end\n"
        "    table.insert(out, s..' '..table.concat(v or {}, ','))\n"
        "  end\n"
        "end\n"
        "return table.concat(out, '\\n')\n";
    char prefix[64];
    const char *args[1] = { prefix };
    kv_reply *r = NULL;
    char *text;

    assert_int_equal(kv_key(fx->kv, prefix, sizeof prefix, "disp", ""), CP_OK);
    assert_int_equal(kv_eval(fx->kv, script, 0, NULL, 1, args, &r, NULL), CP_OK);
    assert_int_equal(r->type, KV_REPLY_STRING);
    text = strdup(r->str);
    kv_reply_free(r);
    return text;
}

static void test_flushall_rebuild(void **state)
{
    fixture *fx = *state;
    order a = submit(fx, "15.1", "CT", "CHEST", ORDER_ROUTINE, g_clinic_a, "P1");
    order b = submit(fx, "15.2", "CR", "CHEST", ORDER_URGENT, g_clinic_a, "P2");
    order c = submit(fx, "15.3", "CT", "HEAD", ORDER_ROUTINE, g_clinic_a, "P3");
    order e = submit(fx, "15.5", "MR", "HEAD", ORDER_ROUTINE, g_clinic_a, "P5");
    char *before, *after;
    size_t n = 0;
    order out[8];

    submit(fx, "15.4", "CT", "CHEST", ORDER_ROUTINE, g_clinic_b, "P4");
    advance(20 * S);
    assert_int_equal(grab(fx, &g_p1, a.id), DISPATCH_GRABBED);
    advance(20 * S);
    assert_int_equal(dispatch_open(fx->d, &g_p1.p, a.id, NULL), CP_OK);
    assert_int_equal(grab(fx, &g_p2, b.id), DISPATCH_GRABBED);
    assert_int_equal(dispatch_give_back(fx->d, &g_p2.p, b.id, "busy", NULL), CP_OK);
    assert_int_equal(grab(fx, &g_p1, b.id), DISPATCH_GRABBED);
    assert_int_equal(dispatch_assign(fx->d, &g_padmin.p, c.id, g_doc2, NULL), CP_OK);
    assert_int_equal(grab(fx, &g_p3, e.id), DISPATCH_GRABBED);
    tick(fx);
    before = snapshot(fx);

    assert_int_equal(kv_commandv(fx->kv, NULL, NULL, "FLUSHALL", (char *)NULL), CP_OK);
    assert_int_equal(redis_num(fx, "ZCARD", "disp:pool", NULL), 0);
    tick(fx);
    after = snapshot(fx);
    assert_string_equal(before, after);
    assert_int_equal(load_of(fx, g_doc1), 4);
    assert_int_equal(redis_num(fx, "ZCARD", "disp:pool", NULL), 1);

    /* The rebuilt cool-down still holds, and the rebuilt pool still works. */
    assert_int_equal(grab(fx, &g_p3, a.id), DISPATCH_GONE);
    assert_int_equal(dispatch_visible(fx->d, &g_p2.p, out, 8, &n, NULL), CP_OK);
    assert_int_equal(n, 1);
    assert_int_equal(grab(fx, &g_p2, out[0].id), DISPATCH_GRABBED);
    free(before);
    free(after);
}

/* Escalated, reported and returned orders come back the same after a rebuild. */
static void test_rebuild_leases(void **state)
{
    fixture *fx = *state;
    order a = submit(fx, "16.1", "CT", "CHEST", ORDER_ROUTINE, g_clinic_a, "P1");
    order r = submit(fx, "16.2", "CR", "CHEST", ORDER_ROUTINE, g_clinic_a, "P2");
    order t = submit(fx, "16.3", "CR", "CHEST", ORDER_ROUTINE, g_clinic_a, "P3");
    char *before, *after;

    assert_int_equal(grab(fx, &g_p1, a.id), DISPATCH_GRABBED);
    assert_int_equal(dispatch_open(fx->d, &g_p1.p, a.id, NULL), CP_OK);
    assert_int_equal(grab(fx, &g_p2, r.id), DISPATCH_GRABBED);
    assert_int_equal(grab(fx, &g_p2, t.id), DISPATCH_GRABBED);
    advance(30 * S);
    assert_int_equal(dispatch_open(fx->d, &g_p2.p, r.id, NULL), CP_OK);
    assert_int_equal(dispatch_open(fx->d, &g_p2.p, t.id, NULL), CP_OK);
    advance(30 * S);
    r = get(fx, r.id);
    r.state = ORDER_REPORTED;
    assert_int_equal(order_transition(fx->orders, &r, ORDER_CLAIMED, "reported", g_doc2, "",
                                      NULL), CP_OK);
    assert_int_equal(dispatch_after_report(fx->d, &r, NULL), CP_OK);
    t = get(fx, t.id);
    t.state = ORDER_REPORTED;
    assert_int_equal(order_transition(fx->orders, &t, ORDER_CLAIMED, "reported", g_doc2, "",
                                      NULL), CP_OK);
    assert_int_equal(dispatch_after_report(fx->d, &t, NULL), CP_OK);
    advance(30 * S);
    t.state = ORDER_RETURNED;
    assert_int_equal(order_transition(fx->orders, &t, ORDER_REPORTED, "rejected", g_doc1, "",
                                      NULL), CP_OK);
    assert_int_equal(dispatch_after_report(fx->d, &t, NULL), CP_OK);
    advance(3600 * S);
    tick(fx);
    assert_string_equal(last_event(fx, a.id).event, "escalated");
    assert_int_equal(load_of(fx, g_doc2), 1);
    before = snapshot(fx);

    assert_int_equal(kv_commandv(fx->kv, NULL, NULL, "FLUSHALL", (char *)NULL), CP_OK);
    tick(fx);
    after = snapshot(fx);
    assert_string_equal(before, after);

    /* The second lapse of the report lease still sends the escalated claim back. */
    advance(3601 * S);
    tick(fx);
    assert_int_equal(get(fx, a.id).state, ORDER_POOLED);
    assert_int_equal(get(fx, t.id).state, ORDER_RETURNED);
    free(before);
    free(after);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules),
        cmocka_unit_test_setup_teardown(test_submit_pools, setup, teardown),
        cmocka_unit_test_setup_teardown(test_visible, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grab_race, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_undo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_eligible, setup, teardown),
        cmocka_unit_test_setup_teardown(test_give_back_cooldown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_lease_and_escalation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_assign_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fallback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fallback_past_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline_assigned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_next_order_to_a_reader, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forced_to_nearly_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline_alert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_affinity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_after_report, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timer_lease, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flushall_rebuild, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuild_leases, setup, teardown),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

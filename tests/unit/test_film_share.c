/*
 * test_film_share.c - cloud film share links against a real Redis: a link
 * made, opened and verified with the patient's second factor; wrong answers
 * throttled, then blocked per link and per peer; revocation and expiry
 * (test clock); forged tokens answered like unknown ones; a patient's child
 * link no wider and no longer than its parent; the audit records; and no
 * token anywhere in the database files.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth/audit.h"
#include "auth/credential.h"
#include "core/alloc.h"
#include "film/share.h"
#include "kv/kv.h"

#define HOUR_US INT64_C(3600000000)
#define DAY_US (24 * HOUR_US)
#define STUDY "1.2.826.0.1.3680043.99.7"
#define BIRTH "19800517"

static int64_t fake_now;

static int64_t clock_now(void)
{
    return fake_now;
}

typedef struct fixture {
    char root[64];
    char sock[128];
    char db[128];
    char key[128];
    pid_t redis;
    kv *kv;
    audit_log *audit;
    film_share_store *store;
} fixture;

static pid_t start_redis(const char *sock)
{
    pid_t pid = fork();

    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);

        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", sock,
               "--save", "", "--appendonly", "no", (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void stop_redis(pid_t pid)
{
    int status;

    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);
}

static int open_store(fixture *f)
{
    film_share_config sc = { 0 };

    sc.db_path = f->db;
    sc.kv = f->kv;
    sc.audit = f->audit;
    sc.key_path = f->key;
    sc.now_us = clock_now;
    sc.delay_base_ms = 20;
    return film_share_store_open(&sc, &f->store, NULL) == CP_OK ? 0 : -1;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    kv_config kc = { 0 };
    struct timespec ts;
    int tries;

    snprintf(f->root, sizeof f->root, "/tmp/cp-test-share-XXXXXX");
    if (mkdtemp(f->root) == NULL)
        return -1;
    snprintf(f->sock, sizeof f->sock, "%s/redis.sock", f->root);
    snprintf(f->db, sizeof f->db, "%s/index.sqlite", f->root);
    snprintf(f->key, sizeof f->key, "%s/share.key", f->root);
    f->redis = start_redis(f->sock);
    kc.url = f->sock;
    if (f->redis < 0 || kv_create(&kc, &f->kv, NULL) != CP_OK)
        return -1;
    for (tries = 0; tries < 200 && kv_ping(f->kv, NULL) != CP_OK; tries++)
        usleep(20000);
    if (tries == 200)
        return -1;

    clock_gettime(CLOCK_REALTIME, &ts);
    fake_now = (int64_t)ts.tv_sec * 1000000;
    if (audit_open_sqlite(f->db, &f->audit, NULL) != CP_OK || open_store(f) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[128];

    film_share_store_close(f->store);
    audit_close(f->audit);
    kv_destroy(f->kv);
    stop_redis(f->redis);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->root);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

/* A study link made by user 7 of institution 3 for patient P1, birth date BIRTH. */
static film_share_link make_link(fixture *f, film_share_scope scope, int64_t expires_us,
                                 char *token)
{
    film_share_request req = { 0 };
    film_share_link l;

    req.scope = scope;
    req.study_uid = STUDY;
    req.issuer = "ISSUER-A";
    req.patient_id = "P1";
    req.institution_id = 3;
    req.created_by = 7;
    req.expires_us = expires_us;
    req.factor = FILM_SHARE_FACTOR_BIRTH_DATE;
    req.factor_answer = BIRTH;
    req.peer = "10.0.0.1";
    assert_int_equal(film_share_create(f->store, &req, &l, token, NULL), CP_OK);
    return l;
}

static film_share_result verify(fixture *f, const char *token, const char *answer, const char *peer)
{
    film_share_result res;

    assert_int_equal(film_share_verify(f->store, token, answer, peer, &res, NULL), CP_OK);
    return res;
}

/* --- the happy path ---------------------------------------------------------------- */

static void test_create_open_verify(void **state)
{
    fixture *f = *state;
    char token[FILM_SHARE_TOKEN_SIZE];
    film_share_link l = make_link(f, FILM_SHARE_SCOPE_STUDY, 0, token);
    film_share_link got;
    film_share_result res;

    assert_true(strncmp(token, "cf_", 3) == 0);
    assert_int_equal(strlen(token), 3 + 43);
    assert_true(l.id > 0);
    assert_int_equal(l.expires_us, fake_now + (int64_t)SHARE_TTL_DEFAULT_S * 1000000);
    assert_int_equal(l.factor, FILM_SHARE_FACTOR_BIRTH_DATE);

    assert_int_equal(film_share_open(f->store, token, "10.0.0.2", &got, NULL), CP_OK);
    assert_int_equal(got.id, l.id);
    assert_int_equal(got.views, 1);
    assert_string_equal(got.study_uid, STUDY);
    assert_string_equal(got.patient_id, "P1");
    assert_int_equal(got.scope, FILM_SHARE_SCOPE_STUDY);

    res = verify(f, token, "19800518", "10.0.0.2");
    assert_int_equal(res.verdict, FILM_SHARE_WRONG);
    assert_int_equal(res.failures, 1);
    res = verify(f, token, "not a date", "10.0.0.2");
    assert_int_equal(res.verdict, FILM_SHARE_WRONG);

    res = verify(f, token, "1980-05-17", "10.0.0.2");
    assert_int_equal(res.verdict, FILM_SHARE_VERIFIED);
    assert_true(strncmp(res.session, "fs_", 3) == 0);
    assert_int_equal(res.link.id, l.id);
    assert_int_equal(res.session_expires_us, fake_now + (int64_t)SHARE_SESSION_S * 1000000);

    assert_int_equal(film_share_session_check(f->store, res.session, &got, NULL), CP_OK);
    assert_int_equal(got.id, l.id);
    assert_int_equal(film_share_session_end(f->store, res.session, NULL), CP_OK);
    assert_int_equal(film_share_session_check(f->store, res.session, &got, NULL), CP_ERR_NOT_FOUND);

    assert_int_equal(film_share_get(f->store, l.id, &got, NULL), CP_OK);
    assert_int_equal(got.views, 1);
}

static void test_phone_factor(void **state)
{
    fixture *f = *state;
    film_share_request req = { 0 };
    char token[FILM_SHARE_TOKEN_SIZE];
    film_share_result res;

    req.scope = FILM_SHARE_SCOPE_PATIENT;
    req.patient_id = "P2";
    req.created_by = 7;
    req.factor = FILM_SHARE_FACTOR_PHONE_LAST4;
    req.factor_answer = "+86 138-0013-5678";
    assert_int_equal(film_share_create(f->store, &req, NULL, token, NULL), CP_OK);
    res = verify(f, token, "5679", "p");
    assert_int_equal(res.verdict, FILM_SHARE_WRONG);
    res = verify(f, token, "5678", "p");
    assert_int_equal(res.verdict, FILM_SHARE_VERIFIED);
    assert_string_equal(res.link.study_uid, "");

    /* A study link needs its study; a phone with three digits is no answer. */
    req.scope = FILM_SHARE_SCOPE_STUDY;
    assert_int_equal(film_share_create(f->store, &req, NULL, token, NULL), CP_ERR_INVALID);
    req.scope = FILM_SHARE_SCOPE_PATIENT;
    req.factor_answer = "123";
    assert_int_equal(film_share_create(f->store, &req, NULL, token, NULL), CP_ERR_INVALID);
    req.factor_answer = "5678";
    req.expires_us = fake_now - 1;
    assert_int_equal(film_share_create(f->store, &req, NULL, token, NULL), CP_ERR_INVALID);
}

/* --- throttle and block --------------------------------------------------------------- */

/* Wrong answers until `target` were counted, waiting out each wait. */
static void fail_until(fixture *f, const char *token, const char *peer, unsigned target)
{
    for (int guard = 0; guard < 1000; guard++) {
        film_share_result res = verify(f, token, "19000101", peer);

        if (res.verdict == FILM_SHARE_WAIT) {
            assert_true(res.retry_after_s >= 1);
            usleep(25000);
            continue;
        }
        assert_int_equal(res.verdict, FILM_SHARE_WRONG);
        if (res.failures >= target)
            return;
    }
    fail_msg("the throttle never let the wrong answers through");
}

static void test_throttle_and_block(void **state)
{
    fixture *f = *state;
    char token[FILM_SHARE_TOKEN_SIZE];
    char other[FILM_SHARE_TOKEN_SIZE];
    film_share_result res;

    make_link(f, FILM_SHARE_SCOPE_STUDY, 0, token);
    make_link(f, FILM_SHARE_SCOPE_STUDY, 0, other);

    for (unsigned i = 1; i < SHARE_DELAY_AFTER; i++) {
        res = verify(f, token, "19000101", "198.51.100.9");
        assert_int_equal(res.verdict, FILM_SHARE_WRONG);
        assert_int_equal(res.failures, i);
    }
    res = verify(f, token, "19000101", "198.51.100.9");
    assert_int_equal(res.verdict, FILM_SHARE_WRONG);
    assert_int_equal(res.failures, SHARE_DELAY_AFTER);

    /* A wait now holds, even for the right answer, which is not looked at. */
    res = verify(f, token, BIRTH, "198.51.100.9");
    assert_int_equal(res.verdict, FILM_SHARE_WAIT);
    assert_true(res.retry_after_s >= 1);

    fail_until(f, token, "198.51.100.9", SHARE_BLOCK_AFTER);

    res = verify(f, token, BIRTH, "198.51.100.9");
    assert_int_equal(res.verdict, FILM_SHARE_BLOCKED);
    assert_true(res.retry_after_s > SHARE_BLOCK_S - 60);

    /* The link is blocked from another peer too... */
    res = verify(f, token, BIRTH, "203.0.113.5");
    assert_int_equal(res.verdict, FILM_SHARE_BLOCKED);
    /* ...and the peer on another link. */
    res = verify(f, other, BIRTH, "198.51.100.9");
    assert_int_equal(res.verdict, FILM_SHARE_BLOCKED);
    /* Another link from another peer is free. */
    res = verify(f, other, BIRTH, "203.0.113.5");
    assert_int_equal(res.verdict, FILM_SHARE_VERIFIED);
}

/* --- revocation, expiry, forgery -------------------------------------------------------- */

static void test_revoke(void **state)
{
    fixture *f = *state;
    char token[FILM_SHARE_TOKEN_SIZE];
    film_share_link l = make_link(f, FILM_SHARE_SCOPE_STUDY, 0, token);
    film_share_result res = verify(f, token, BIRTH, "p");
    film_share_link got;
    cp_error e1;
    cp_error e2;
    char session[FILM_SHARE_TOKEN_SIZE];

    assert_int_equal(res.verdict, FILM_SHARE_VERIFIED);
    snprintf(session, sizeof session, "%s", res.session);
    assert_int_equal(film_share_session_check(f->store, session, &got, NULL), CP_OK);
    assert_int_equal(film_share_revoke(f->store, l.id, 7, "10.0.0.1", NULL), CP_OK);
    assert_int_equal(film_share_revoke(f->store, l.id, 7, "10.0.0.1", NULL), CP_OK);
    assert_int_equal(film_share_revoke(f->store, 999999, 7, NULL, NULL), CP_ERR_NOT_FOUND);

    cp_error_clear(&e1);
    cp_error_clear(&e2);
    assert_int_equal(film_share_open(f->store, token, "p", &got, &e1), CP_ERR_NOT_FOUND);
    assert_int_equal(film_share_open(f->store, "cf_unknown", "p", &got, &e2), CP_ERR_NOT_FOUND);
    assert_string_equal(e1.detail, e2.detail);
    assert_int_equal(film_share_verify(f->store, token, BIRTH, "p", &res, NULL), CP_ERR_NOT_FOUND);
    assert_int_equal(film_share_session_check(f->store, session, &got, NULL), CP_ERR_NOT_FOUND);
    assert_int_equal(film_share_get(f->store, l.id, &got, NULL), CP_OK);
    assert_true(got.revoked_us != 0);
}

static void test_expire(void **state)
{
    fixture *f = *state;
    char token[FILM_SHARE_TOKEN_SIZE];
    film_share_link got;
    film_share_result res;
    int64_t start = fake_now;

    make_link(f, FILM_SHARE_SCOPE_STUDY, fake_now + HOUR_US, token);
    res = verify(f, token, BIRTH, "p");
    assert_int_equal(res.verdict, FILM_SHARE_VERIFIED);

    /* The session would outlive the link: it is cut to the link's life. */
    assert_int_equal(res.session_expires_us, fake_now + (int64_t)SHARE_SESSION_S * 1000000);
    fake_now += HOUR_US - 600 * INT64_C(1000000);
    res = verify(f, token, BIRTH, "p");
    assert_int_equal(res.session_expires_us, fake_now + 600 * INT64_C(1000000));

    fake_now = start + 2 * HOUR_US;
    assert_int_equal(film_share_open(f->store, token, "p", &got, NULL), CP_ERR_NOT_FOUND);
    assert_int_equal(film_share_verify(f->store, token, BIRTH, "p", &res, NULL), CP_ERR_NOT_FOUND);
    assert_int_equal(film_share_session_check(f->store, res.session, &got, NULL), CP_ERR_NOT_FOUND);
    fake_now = start;

    /* Too far away. */
    {
        film_share_request req = { .scope = FILM_SHARE_SCOPE_PATIENT, .patient_id = "P1",
                              .factor = FILM_SHARE_FACTOR_BIRTH_DATE, .factor_answer = BIRTH };

        req.expires_us = fake_now + (SHARE_TTL_MAX_S + 10) * INT64_C(1000000);
        assert_int_equal(film_share_create(f->store, &req, NULL, token, NULL), CP_ERR_INVALID);
    }
}

static void test_forged(void **state)
{
    fixture *f = *state;
    char token[FILM_SHARE_TOKEN_SIZE];
    char forged[FILM_SHARE_TOKEN_SIZE];
    const char *bad[] = { "", "cf_", "abc", "fs_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                          "cf_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                          "cf_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" };
    film_share_link got;
    film_share_result res;
    cp_error e;

    make_link(f, FILM_SHARE_SCOPE_STUDY, 0, token);
    snprintf(forged, sizeof forged, "%s", token);
    forged[10] = forged[10] == 'A' ? 'B' : 'A';
    cp_error_clear(&e);
    assert_int_equal(film_share_open(f->store, forged, "p", &got, &e), CP_ERR_NOT_FOUND);
    assert_string_equal(e.detail, "share: no such link");
    assert_int_equal(film_share_verify(f->store, forged, BIRTH, "p", &res, NULL), CP_ERR_NOT_FOUND);
    assert_int_equal(film_share_open(f->store, NULL, "p", &got, NULL), CP_ERR_NOT_FOUND);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(film_share_open(f->store, bad[i], "p", &got, NULL), CP_ERR_NOT_FOUND);

    /* A link token is not a session, nor the other way round. */
    res = verify(f, token, BIRTH, "p");
    assert_int_equal(film_share_session_check(f->store, token, &got, NULL), CP_ERR_NOT_FOUND);
    assert_int_equal(film_share_open(f->store, res.session, "p", &got, NULL), CP_ERR_NOT_FOUND);
}

/* --- children ------------------------------------------------------------------------------ */

static cp_status count_link(void *ctx, const film_share_link *l)
{
    (void)l;
    (*(int *)ctx)++;
    return CP_OK;
}

static void test_child(void **state)
{
    fixture *f = *state;
    char token[FILM_SHARE_TOKEN_SIZE];
    char child_token[FILM_SHARE_TOKEN_SIZE];
    char phone_token[FILM_SHARE_TOKEN_SIZE];
    char grand_token[FILM_SHARE_TOKEN_SIZE];
    film_share_link parent = make_link(f, FILM_SHARE_SCOPE_PATIENT_WITH_PRIOR,
                                       fake_now + 10 * DAY_US, token);
    film_share_child_request cr = { 0 };
    film_share_filter filter = { 0 };
    film_share_link child;
    film_share_link phone_child;
    film_share_link got;
    film_share_result res = verify(f, token, BIRTH, "patient-phone");
    film_share_result child_res;
    int count = 0;

    assert_int_equal(res.verdict, FILM_SHARE_VERIFIED);

    /* Wider than the parent, or without a session: refused. */
    cr.scope = FILM_SHARE_SCOPE_PATIENT;
    assert_int_equal(film_share_child(f->store, res.session, &cr, &child, child_token, NULL),
                     CP_ERR_FORBIDDEN);
    cr.scope = FILM_SHARE_SCOPE_STUDY;
    assert_int_equal(film_share_child(f->store, "fs_nothing", &cr, &child, child_token, NULL),
                     CP_ERR_NOT_FOUND);

    /* Longer than the parent: cut to the parent's expiry. */
    cr.expires_us = fake_now + 30 * DAY_US;
    cr.deidentify = true;
    cr.peer = "patient-phone";
    assert_int_equal(film_share_child(f->store, res.session, &cr, &child, child_token, NULL),
                     CP_OK);
    assert_int_equal(child.expires_us, parent.expires_us);
    assert_int_equal(child.parent_id, parent.id);
    assert_int_equal(child.created_by, 0);
    assert_int_equal(child.scope, FILM_SHARE_SCOPE_STUDY);
    assert_true(child.deidentify);
    assert_string_equal(child.study_uid, STUDY);
    assert_string_equal(child.patient_id, "P1");
    assert_int_equal(child.institution_id, 3);
    assert_string_not_equal(child_token, token);

    /* The default: seven days, the parent's factor and answer. */
    cr.expires_us = 0;
    cr.deidentify = false;
    cr.factor = FILM_SHARE_FACTOR_PHONE_LAST4;
    cr.factor_answer = "13900004321";
    assert_int_equal(film_share_child(f->store, res.session, &cr, &phone_child, phone_token, NULL),
                     CP_OK);
    assert_int_equal(phone_child.expires_us,
                     fake_now + (int64_t)SHARE_CHILD_TTL_DEFAULT_S * 1000000);
    assert_false(phone_child.deidentify);

    child_res = verify(f, child_token, "1980/05/17", "doctor");
    assert_int_equal(child_res.verdict, FILM_SHARE_VERIFIED);
    assert_int_equal(child_res.link.id, child.id);
    assert_int_equal(verify(f, phone_token, BIRTH, "doctor2").verdict, FILM_SHARE_WRONG);
    assert_int_equal(verify(f, phone_token, "4321", "doctor2").verdict, FILM_SHARE_VERIFIED);

    /* A doctor given a child cannot share on. */
    assert_int_equal(film_share_child(f->store, child_res.session, &cr, &got, grand_token, NULL),
                     CP_ERR_FORBIDDEN);

    filter.parent_id = parent.id;
    assert_int_equal(film_share_list(f->store, &filter, count_link, &count, NULL), CP_OK);
    assert_int_equal(count, 2);
    count = 0;
    filter.parent_id = 0;
    filter.issuer = "ISSUER-A";
    filter.patient_id = "P1";
    assert_int_equal(film_share_list(f->store, &filter, count_link, &count, NULL), CP_OK);
    assert_int_equal(count, 3);
    filter.patient_id = NULL;
    filter.issuer = NULL;
    assert_int_equal(film_share_list(f->store, &filter, count_link, &count, NULL), CP_ERR_INVALID);

    /* The patient revokes one child; then staff revoke the parent, and the rest goes too. */
    assert_int_equal(film_share_revoke_child(f->store, res.session, phone_child.id, NULL), CP_OK);
    assert_int_equal(film_share_open(f->store, phone_token, "doctor2", &got, NULL),
                     CP_ERR_NOT_FOUND);
    assert_int_equal(film_share_open(f->store, child_token, "doctor", &got, NULL), CP_OK);
    assert_int_equal(film_share_revoke_child(f->store, res.session, parent.id, NULL),
                     CP_ERR_NOT_FOUND);
    assert_int_equal(film_share_revoke(f->store, parent.id, 7, NULL, NULL), CP_OK);
    assert_int_equal(film_share_open(f->store, child_token, "doctor", &got, NULL),
                     CP_ERR_NOT_FOUND);
    assert_int_equal(film_share_session_check(f->store, child_res.session, &got, NULL),
                     CP_ERR_NOT_FOUND);

    count = 0;
    filter.study_uid = STUDY;
    filter.valid_only = true;
    assert_int_equal(film_share_list(f->store, &filter, count_link, &count, NULL), CP_OK);
    assert_int_equal(count, 0);
}

/* A child of a study link cannot be of patient scope; one of a patient link may be. */
static void test_child_scope(void **state)
{
    fixture *f = *state;
    char token[FILM_SHARE_TOKEN_SIZE];
    char child_token[FILM_SHARE_TOKEN_SIZE];
    film_share_child_request cr = { .scope = FILM_SHARE_SCOPE_PATIENT_WITH_PRIOR };
    film_share_link child;
    film_share_result res;

    make_link(f, FILM_SHARE_SCOPE_STUDY, 0, token);
    res = verify(f, token, BIRTH, "p");
    assert_int_equal(film_share_child(f->store, res.session, &cr, &child, child_token, NULL),
                     CP_ERR_FORBIDDEN);
    cr.scope = FILM_SHARE_SCOPE_STUDY;
    cr.factor = FILM_SHARE_FACTOR_BIRTH_DATE;
    cr.factor_answer = "2024-13-01";
    assert_int_equal(film_share_child(f->store, res.session, &cr, &child, child_token, NULL),
                     CP_ERR_INVALID);
}

/* --- the audit trail and the database ------------------------------------------------------- */

typedef struct seen {
    int opened;
    int verified;
    int refused;
    int child;
    int created;
    const char *token;
    const char *session;
    bool leaked;
} seen;

static cp_status see(void *ctx, const audit_record *r)
{
    seen *s = ctx;
    const char *fields[] = { r->actor, r->object_id, r->detail, r->peer, r->session_id };

    if (strcmp(r->type, "share_link_opened") == 0) {
        s->opened++;
        assert_int_equal(r->event, AUDIT_INSTANCES_ACCESSED);
    } else if (strcmp(r->type, "share_link_verified") == 0) {
        s->verified++;
        assert_int_equal(r->event, AUDIT_USER_AUTHENTICATION);
        assert_int_equal(r->outcome, AUDIT_SUCCESS);
    } else if (strcmp(r->type, "share_link_refused") == 0) {
        s->refused++;
        assert_int_equal(r->outcome, AUDIT_MINOR_FAILURE);
    } else if (strcmp(r->type, "share_link_child") == 0) {
        s->child++;
    } else if (strcmp(r->type, "share_link_created") == 0) {
        s->created++;
    }
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (strstr(fields[i], s->token + 3) != NULL || strstr(fields[i], s->session + 3) != NULL)
            s->leaked = true;
    return CP_OK;
}

static bool file_contains(const char *path, const char *needle)
{
    FILE *fp = fopen(path, "rb");
    size_t nlen = strlen(needle);
    char *data;
    long size;
    bool found = false;

    if (fp == NULL)
        return false;
    fseek(fp, 0, SEEK_END);
    size = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    data = malloc((size_t)size + 1);
    assert_non_null(data);
    assert_int_equal(fread(data, 1, (size_t)size, fp), (size_t)size);
    fclose(fp);
    found = memmem(data, (size_t)size, needle, nlen) != NULL;
    free(data);
    return found;
}

static void test_audit_and_no_token_stored(void **state)
{
    fixture *f = *state;
    char token[FILM_SHARE_TOKEN_SIZE];
    char child_token[FILM_SHARE_TOKEN_SIZE];
    film_share_link l = make_link(f, FILM_SHARE_SCOPE_STUDY, 0, token);
    film_share_child_request cr = { .scope = FILM_SHARE_SCOPE_STUDY };
    film_share_link got;
    film_share_result res;
    audit_filter af = { 0 };
    char actor[32];
    char token_hash[65];
    char path[160];
    seen s = { 0 };

    assert_int_equal(film_share_open(f->store, token, "p", &got, NULL), CP_OK);
    assert_int_equal(verify(f, token, "19990101", "p").verdict, FILM_SHARE_WRONG);
    res = verify(f, token, BIRTH, "p");
    assert_int_equal(res.verdict, FILM_SHARE_VERIFIED);
    assert_int_equal(film_share_child(f->store, res.session, &cr, &got, child_token, NULL), CP_OK);

    assert_int_equal(audit_flush(f->audit, NULL), CP_OK);
    snprintf(actor, sizeof actor, "share:%lld", (long long)l.id);
    af.actor = actor;
    s.token = token;
    s.session = res.session;
    assert_int_equal(audit_query(f->audit, &af, see, &s, NULL), CP_OK);
    assert_int_equal(s.created, 1);
    assert_int_equal(s.opened, 1);
    assert_int_equal(s.refused, 1);
    assert_int_equal(s.verified, 1);
    assert_int_equal(s.child, 1);
    assert_false(s.leaked);

    /* Closed (the WAL checkpointed into the file), no file holds a token. */
    film_share_store_close(f->store);
    f->store = NULL;
    audit_close(f->audit);
    f->audit = NULL;
    for (int i = 0; i < 3; i++) {
        static const char *const suffix[] = { "", "-wal", "-shm" };

        snprintf(path, sizeof path, "%s%s", f->db, suffix[i]);
        assert_false(file_contains(path, token));
        assert_false(file_contains(path, token + 3));
        assert_false(file_contains(path, child_token + 3));
        assert_false(file_contains(path, res.session + 3));
    }
    /* The hash is what is kept (the scan above would find a token if it were). */
    credential_token_hash(token, token_hash);
    snprintf(path, sizeof path, "%s", f->db);
    assert_true(file_contains(path, token_hash));
    assert_int_equal(audit_open_sqlite(f->db, &f->audit, NULL), CP_OK);
    assert_int_equal(open_store(f), 0);
}

static void test_names(void **state)
{
    char url[SHARE_URL_MAX];

    (void)state;
    for (int i = FILM_SHARE_SCOPE_STUDY; i <= FILM_SHARE_SCOPE_PATIENT; i++)
        assert_int_equal(film_share_scope_parse(film_share_scope_name((film_share_scope)i)), i);
    assert_int_equal(film_share_scope_parse("everything"), 0);
    assert_int_equal(film_share_factor_parse("birth_date"), FILM_SHARE_FACTOR_BIRTH_DATE);
    assert_int_equal(film_share_factor_parse("phone_last4"), FILM_SHARE_FACTOR_PHONE_LAST4);
    assert_int_equal(film_share_url("https://pacs.example.org/", "cf_abc", url, sizeof url), CP_OK);
    assert_string_equal(url, "https://pacs.example.org/film/cf_abc");
    assert_int_equal(film_share_url("https://x", "cf_abc", url, 10), CP_ERR_LIMIT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test_setup_teardown(test_create_open_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_phone_factor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_throttle_and_block, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_scope, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_and_no_token_stored, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_consult_report.c - reports under an edit lock in a real Redis,
 * two-level signing, release with a signature that a changed text no
 * longer matches, versions that SQL cannot change, the clinic's critical
 * acknowledgement, templates, reading statistics, and the Basic Text SR
 * (PS3.3 A.35.1) stored through the archive and read back.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "archive/archive.h"
#include "auth/directory.h"
#include "consult/order.h"
#include "consult/report.h"
#include "consult/sr.h"
#include "consult/stats.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "dicom/dataset.h"
#include "dicom/dict_tags.h"
#include "dicom/io.h"
#include "dicom/writer.h"
#include "index/index.h"
#include "kv/kv.h"
#include "store/store.h"

#define MIN_US INT64_C(60000000)
#define T0 INT64_C(1764000000000000)     /* 2025-11-24, a fixed start for the clock */
#define CT_CLASS "1.2.840.10008.5.1.4.1.1.2"

static int64_t fake_now = T0;

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
    order_store *orders;
    report_store *reports;
    principal doctor;                   /* id 10, resident, writes */
    principal other;                    /* id 11, another doctor */
    principal reviewer;                 /* id 20, attending reviewer */
    principal resident;                 /* id 21, a reviewer of too low a title */
    principal selfdoc;                  /* id 12, may self-approve */
    principal tech;                     /* id 30, technician of the clinic (1) */
    principal stranger;                 /* id 31, technician of another clinic (2) */
    principal_grant clinic;
    principal_grant other_clinic;
    int next_study;
} fixture;

/* --- Redis ----------------------------------------------------------------------- */

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

static void make_principal(principal *p, int64_t id, unsigned roles, int title,
                           const char *session)
{
    memset(p, 0, sizeof *p);
    p->kind = PRINCIPAL_USER;
    p->id = id;
    snprintf(p->name, sizeof p->name, "user%lld", (long long)id);
    p->roles = roles;
    p->title = title;
    snprintf(p->session_id, sizeof p->session_id, "%s", session);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    kv_config kc = { 0 };
    report_config rc = { 0 };
    int tries;

    snprintf(f->root, sizeof f->root, "/tmp/cp-test-report-XXXXXX");
    if (mkdtemp(f->root) == NULL)
        return -1;
    snprintf(f->sock, sizeof f->sock, "%s/redis.sock", f->root);
    snprintf(f->db, sizeof f->db, "%s/index.sqlite", f->root);
    snprintf(f->key, sizeof f->key, "%s/report-signing.key", f->root);
    f->redis = start_redis(f->sock);
    kc.url = f->sock;
    if (f->redis < 0 || kv_create(&kc, &f->kv, NULL) != CP_OK)
        return -1;
    for (tries = 0; tries < 200 && kv_ping(f->kv, NULL) != CP_OK; tries++)
        usleep(20000);
    if (tries == 200)
        return -1;

    fake_now = T0;
    if (order_store_open_sqlite(f->db, &f->orders, NULL) != CP_OK)
        return -1;
    order_store_set_clock(f->orders, clock_now);
    rc.orders = f->orders;
    rc.kv = f->kv;
    rc.db_path = f->db;
    rc.key_path = f->key;
    rc.now_us = clock_now;
    if (report_store_open(&rc, &f->reports, NULL) != CP_OK)
        return -1;

    f->clinic = (principal_grant){ .institution_id = 1 };
    f->other_clinic = (principal_grant){ .institution_id = 2 };
    make_principal(&f->doctor, 10, ROLE_RADIOLOGIST, 1, "sess-a");
    make_principal(&f->other, 11, ROLE_RADIOLOGIST, 1, "sess-b");
    make_principal(&f->reviewer, 20, ROLE_RADIOLOGIST | ROLE_REVIEWER, 3, "sess-c");
    f->reviewer.grants = &f->clinic;
    f->reviewer.grant_count = 1;
    make_principal(&f->resident, 21, ROLE_RADIOLOGIST | ROLE_REVIEWER, 1, "sess-d");
    f->resident.grants = &f->clinic;
    f->resident.grant_count = 1;
    make_principal(&f->selfdoc, 12, ROLE_RADIOLOGIST | ROLE_REVIEWER, 3, "sess-e");
    f->selfdoc.may_self_approve = true;
    f->selfdoc.grants = &f->clinic;
    f->selfdoc.grant_count = 1;
    make_principal(&f->tech, 30, ROLE_TECHNICIAN, 0, "sess-f");
    f->tech.institution_id = 1;
    f->tech.grants = &f->clinic;
    f->tech.grant_count = 1;
    make_principal(&f->stranger, 31, ROLE_TECHNICIAN, 0, "sess-g");
    f->stranger.institution_id = 2;
    f->stranger.grants = &f->other_clinic;
    f->stranger.grant_count = 1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[128];

    report_store_close(f->reports);
    order_store_close(f->orders);
    kv_destroy(f->kv);
    stop_redis(f->redis);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->root);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

/* An order of clinic 1, pooled then claimed by `doctor` (reading for centre 5). */
static int64_t claimed_order(fixture *f, int64_t doctor, const char *study)
{
    order o = { 0 };
    char uid[64];

    if (study == NULL) {
        snprintf(uid, sizeof uid, "1.2.826.0.1.3680043.99.%d", ++f->next_study);
        study = uid;
    }
    snprintf(o.study_uid, sizeof o.study_uid, "%s", study);
    snprintf(o.patient_id, sizeof o.patient_id, "P1");
    snprintf(o.issuer, sizeof o.issuer, "ISSUER-A");
    snprintf(o.accession, sizeof o.accession, "ACC1");
    snprintf(o.modality, sizeof o.modality, "CT");
    snprintf(o.body_part, sizeof o.body_part, "CHEST");
    o.weight = 3;
    o.requesting_id = 1;
    assert_int_equal(order_create(f->orders, &o, 0, NULL), CP_OK);
    o.state = ORDER_POOLED;
    o.pooled_us = fake_now;
    o.deadline_us = fake_now + 120 * MIN_US;
    assert_int_equal(order_transition(f->orders, &o, ORDER_SUBMITTED, "pooled", 0, NULL, NULL),
                     CP_OK);
    o.state = ORDER_CLAIMED;
    o.doctor_id = doctor;
    o.reading_id = 5;
    o.claimed_us = fake_now;
    assert_int_equal(order_transition(f->orders, &o, ORDER_POOLED, "grabbed", doctor, NULL,
                                      NULL), CP_OK);
    return o.id;
}

static order_state state_of(fixture *f, int64_t id)
{
    order o;

    assert_int_equal(order_get(f->orders, id, &o, NULL), CP_OK);
    return o.state;
}

/* Draft, submit, approve and release: the newest version is then released. */
static int64_t released_order(fixture *f, bool critical)
{
    int64_t id = claimed_order(f, f->doctor.id, NULL);

    assert_int_equal(report_save_draft(f->reports, &f->doctor, id, "No nodules.",
                                       "Normal chest CT.", critical, NULL), CP_OK);
    assert_int_equal(report_submit(f->reports, &f->doctor, id, false, NULL, NULL), CP_OK);
    fake_now += MIN_US;
    assert_int_equal(report_review(f->reports, &f->reviewer, id, true, NULL, NULL), CP_OK);
    assert_int_equal(report_release(f->reports, id, 0, NULL), CP_OK);
    assert_int_equal(state_of(f, id), ORDER_RELEASED);
    return id;
}

/* --- the reading centre's reviewers ------------------------------------------- */

/*
 * A reviewer of the centre the order is read under reviews it without a
 * contract with the requesting clinic; a reviewer of another centre does not.
 */
static void test_reviewer_of_reading_centre(void **state)
{
    fixture *f = *state;
    int64_t id = claimed_order(f, f->doctor.id, NULL);
    principal centre, elsewhere;
    cp_error err;

    make_principal(&centre, 22, ROLE_RADIOLOGIST | ROLE_REVIEWER, 3, "sess-h");
    centre.institution_id = 5;
    make_principal(&elsewhere, 23, ROLE_RADIOLOGIST | ROLE_REVIEWER, 3, "sess-i");
    elsewhere.institution_id = 6;
    assert_int_equal(report_save_draft(f->reports, &f->doctor, id, "Clear lungs.", "Normal.",
                                       false, NULL), CP_OK);
    assert_int_equal(report_submit(f->reports, &f->doctor, id, false, NULL, NULL), CP_OK);

    cp_error_clear(&err);
    assert_int_equal(report_review(f->reports, &elsewhere, id, true, NULL, &err),
                     CP_ERR_FORBIDDEN);
    assert_non_null(strstr(err.detail, "may not see"));
    assert_int_equal(report_review(f->reports, &centre, id, true, NULL, NULL), CP_OK);
    assert_int_equal(state_of(f, id), ORDER_APPROVED);
}

/* --- repair after a crash between the order's move and the version's write ---- */

typedef struct repair_log {
    int calls;
    char last[32];
} repair_log;

static void on_repair(void *ctx, int64_t order_id, const char *what, const cp_error *err)
{
    repair_log *r = ctx;

    (void)order_id;
    (void)err;
    r->calls++;
    snprintf(r->last, sizeof r->last, "%s", what);
}

/* Moves the order as the first half of a report call does, and nothing more. */
static void move_only(fixture *f, int64_t id, order_state to, const char *event,
                      int64_t actor, const char *reason)
{
    order o;
    order_state from;

    assert_int_equal(order_get(f->orders, id, &o, NULL), CP_OK);
    from = o.state;
    o.state = to;
    if (to == ORDER_REPORTED)
        o.reported_us = fake_now;
    if (to == ORDER_APPROVED) {
        o.approved_us = fake_now;
        o.reviewer_id = actor;
    }
    if (to == ORDER_RETURNED) {
        o.reviewer_id = actor;
        o.rejections++;
    }
    if (to == ORDER_RELEASED)
        o.released_us = fake_now;
    assert_int_equal(order_transition(f->orders, &o, from, event, actor, reason, NULL), CP_OK);
}

static void assert_newest(fixture *f, int64_t id, int version, report_status status)
{
    report_version v;

    assert_int_equal(report_get(f->reports, id, -1, &v, NULL), CP_OK);
    assert_int_equal(v.version, version);
    assert_int_equal(v.status, status);
    report_version_clear(&v);
}

static void test_repair_after_crash(void **state)
{
    fixture *f = *state;
    int64_t id = claimed_order(f, f->doctor.id, NULL);
    int64_t fine = released_order(f, false);
    repair_log log = { 0 };
    report_version v;
    order o;
    size_t n = 0;

    /* Submit: the order moved, the draft was never frozen. */
    assert_int_equal(report_save_draft(f->reports, &f->doctor, id, "Left effusion.",
                                       "Effusion.", false, NULL), CP_OK);
    move_only(f, id, ORDER_REPORTED, "reported", f->doctor.id, NULL);
    assert_int_equal(report_get(f->reports, id, -1, &v, NULL), CP_ERR_NOT_FOUND);
    assert_int_equal(report_repair(f->reports, on_repair, &log, &n, NULL), CP_OK);
    assert_int_equal(n, 1);
    assert_string_equal(log.last, "version_written");
    assert_newest(f, id, 1, REPORT_SUBMITTED);

    /* Rejection: the order went back, the version still says submitted. */
    fake_now += MIN_US;
    move_only(f, id, ORDER_RETURNED, "rejected", f->reviewer.id, "Which side?");
    assert_int_equal(report_repair(f->reports, NULL, NULL, &n, NULL), CP_OK);
    assert_int_equal(n, 1);
    assert_int_equal(report_get(f->reports, id, 1, &v, NULL), CP_OK);
    assert_int_equal(v.status, REPORT_REJECTED);
    assert_string_equal(v.reason, "Which side?");
    assert_int_equal(v.reviewer_id, f->reviewer.id);
    assert_int_equal(v.reviewed_us, fake_now);
    report_version_clear(&v);

    /* Resubmit (the draft frozen as version 2), approval, release: each half lost. */
    move_only(f, id, ORDER_REPORTED, "reported", f->doctor.id, NULL);
    assert_int_equal(report_repair(f->reports, NULL, NULL, &n, NULL), CP_OK);
    assert_newest(f, id, 2, REPORT_SUBMITTED);
    fake_now += MIN_US;
    move_only(f, id, ORDER_APPROVED, "approved", f->reviewer.id, NULL);
    assert_int_equal(report_repair(f->reports, NULL, NULL, &n, NULL), CP_OK);
    assert_newest(f, id, 2, REPORT_APPROVED);
    fake_now += MIN_US;
    move_only(f, id, ORDER_RELEASED, "released", 0, NULL);
    assert_int_equal(report_repair(f->reports, NULL, NULL, &n, NULL), CP_OK);
    assert_int_equal(n, 1);

    assert_int_equal(order_get(f->orders, id, &o, NULL), CP_OK);
    assert_int_equal(report_get(f->reports, id, -1, &v, NULL), CP_OK);
    assert_int_equal(v.status, REPORT_RELEASED);
    assert_int_equal(v.released_us, o.released_us);
    assert_true(report_verify(f->reports, &v, &o));
    report_version_clear(&v);

    /* Nothing is left to do, and the order read the normal way was never touched. */
    log.calls = 0;
    assert_int_equal(report_repair(f->reports, on_repair, &log, &n, NULL), CP_OK);
    assert_int_equal(n, 0);
    assert_int_equal(log.calls, 0);
    assert_newest(f, fine, 1, REPORT_RELEASED);
}

/* --- locks ----------------------------------------------------------------------- */

static void test_lock_two_principals(void **state)
{
    fixture *f = *state;
    int64_t holder = 0;
    cp_error err;

    assert_int_equal(report_lock(f->reports, &f->doctor, 7, &holder, NULL), CP_OK);
    assert_int_equal(holder, 10);
    assert_int_equal(report_lock(f->reports, &f->other, 7, &holder, &err), CP_ERR_EXISTS);
    assert_int_equal(holder, 10);

    /* The holder renews; somebody else may not unlock; the holder does. */
    assert_int_equal(report_lock(f->reports, &f->doctor, 7, &holder, NULL), CP_OK);
    assert_int_equal(report_unlock(f->reports, &f->other, 7, NULL), CP_ERR_FORBIDDEN);
    assert_int_equal(report_lock(f->reports, &f->other, 7, &holder, NULL), CP_ERR_EXISTS);
    assert_int_equal(report_unlock(f->reports, &f->doctor, 7, NULL), CP_OK);
    assert_int_equal(report_lock(f->reports, &f->other, 7, &holder, NULL), CP_OK);
    assert_int_equal(holder, 11);

    /* The same user in another session is another holder. */
    {
        principal again = f->other;

        snprintf(again.session_id, sizeof again.session_id, "sess-z");
        assert_int_equal(report_lock(f->reports, &again, 7, &holder, NULL), CP_ERR_EXISTS);
    }
}

/* --- writing, review ---------------------------------------------------------- */

static void test_draft_submit_reject_resubmit(void **state)
{
    fixture *f = *state;
    int64_t id = claimed_order(f, f->doctor.id, NULL);
    report_version v;
    int version = 0;

    assert_int_equal(report_save_draft(f->reports, &f->other, id, "x", "y", false, NULL),
                     CP_ERR_FORBIDDEN);
    assert_int_equal(report_save_draft(f->reports, &f->doctor, id, "Findings one.",
                                       "Impression one.", false, NULL), CP_OK);

    /* While the author holds the lock, nobody else can take it. */
    assert_int_equal(report_lock(f->reports, &f->other, id, NULL, NULL), CP_ERR_EXISTS);

    assert_int_equal(report_submit(f->reports, &f->doctor, id, false, &version, NULL), CP_OK);
    assert_int_equal(version, 1);
    assert_int_equal(state_of(f, id), ORDER_REPORTED);
    assert_int_equal(report_save_draft(f->reports, &f->doctor, id, "late", "", false, NULL),
                     CP_ERR_INVALID);

    assert_int_equal(report_review(f->reports, &f->reviewer, id, false, "", NULL),
                     CP_ERR_INVALID);
    assert_int_equal(report_review(f->reports, &f->resident, id, true, NULL, NULL),
                     CP_ERR_FORBIDDEN);
    assert_int_equal(report_review(f->reports, &f->reviewer, id, false,
                                   "Say which lobe.", NULL), CP_OK);
    assert_int_equal(state_of(f, id), ORDER_RETURNED);

    assert_int_equal(report_get(f->reports, id, 1, &v, NULL), CP_OK);
    assert_int_equal(v.status, REPORT_REJECTED);
    assert_string_equal(v.reason, "Say which lobe.");
    assert_int_equal(v.reviewer_id, 20);
    report_version_clear(&v);
    assert_int_equal(report_get(f->reports, id, 0, &v, NULL), CP_OK);
    assert_int_equal(v.status, REPORT_DRAFT);
    assert_string_equal(v.findings, "Findings one.");
    report_version_clear(&v);

    assert_int_equal(report_save_draft(f->reports, &f->doctor, id, "Findings two, left lobe.",
                                       "Impression two.", false, NULL), CP_OK);
    assert_int_equal(report_submit(f->reports, &f->doctor, id, false, &version, NULL), CP_OK);
    assert_int_equal(version, 2);
    assert_int_equal(state_of(f, id), ORDER_REPORTED);
    assert_int_equal(report_get(f->reports, id, -1, &v, NULL), CP_OK);
    assert_int_equal(v.version, 2);
    assert_int_equal(v.status, REPORT_SUBMITTED);
    assert_string_equal(v.findings, "Findings two, left lobe.");
    report_version_clear(&v);
    assert_int_equal(report_get(f->reports, id, 1, &v, NULL), CP_OK);
    assert_string_equal(v.findings, "Findings one.");
    report_version_clear(&v);
}

static void test_self_approval(void **state)
{
    fixture *f = *state;
    int64_t id = claimed_order(f, f->doctor.id, NULL);
    int64_t own = claimed_order(f, f->selfdoc.id, NULL);
    principal senior;
    report_version v;
    int64_t sid;

    assert_int_equal(report_save_draft(f->reports, &f->doctor, id, "a", "b", false, NULL),
                     CP_OK);
    assert_int_equal(report_submit(f->reports, &f->doctor, id, true, NULL, NULL),
                     CP_ERR_FORBIDDEN);
    assert_int_equal(state_of(f, id), ORDER_CLAIMED);

    assert_int_equal(report_save_draft(f->reports, &f->selfdoc, own, "a", "b", false, NULL),
                     CP_OK);
    assert_int_equal(report_submit(f->reports, &f->selfdoc, own, true, NULL, NULL), CP_OK);
    assert_int_equal(state_of(f, own), ORDER_APPROVED);
    assert_int_equal(report_get(f->reports, own, -1, &v, NULL), CP_OK);
    assert_int_equal(v.status, REPORT_APPROVED);
    assert_int_equal(v.reviewer_id, v.author_id);
    report_version_clear(&v);

    /* A senior reviewer without the right may not review their own report. */
    senior = f->reviewer;
    sid = claimed_order(f, senior.id, NULL);
    assert_int_equal(report_save_draft(f->reports, &senior, sid, "a", "b", false, NULL), CP_OK);
    assert_int_equal(report_submit(f->reports, &senior, sid, false, NULL, NULL), CP_OK);
    assert_int_equal(report_review(f->reports, &senior, sid, true, NULL, NULL),
                     CP_ERR_FORBIDDEN);
    assert_int_equal(report_review(f->reports, &f->selfdoc, sid, true, NULL, NULL), CP_OK);
}

static void test_release_signature(void **state)
{
    fixture *f = *state;
    int64_t id = released_order(f, false);
    report_version v;
    order o;
    cp_buf text = CP_BUF_INIT;

    assert_int_equal(order_get(f->orders, id, &o, NULL), CP_OK);
    assert_int_equal(report_get(f->reports, id, -1, &v, NULL), CP_OK);
    assert_int_equal(v.status, REPORT_RELEASED);
    assert_true(v.released_us > 0);
    assert_true(strlen(v.signature) > 40);
    assert_true(report_verify(f->reports, &v, &o));
    assert_true(strlen(report_public_key(f->reports)) > 40);

    assert_int_equal(report_signed_text(&v, &o, &text), CP_OK);
    assert_non_null(strstr((char *)text.data, "\nimpression: Normal chest CT.\n"));
    cp_buf_free(&text);

    cp_free(v.impression);
    v.impression = cp_strdup("Normal chest CT.\nreviewer: 99");
    assert_false(report_verify(f->reports, &v, &o));
    report_version_clear(&v);

    /* Released once: a second release is refused. */
    assert_int_equal(report_release(f->reports, id, 0, NULL), CP_ERR_INVALID);
}

static void test_versions_cannot_change(void **state)
{
    fixture *f = *state;
    int64_t id = released_order(f, false);
    sqlite3 *db;
    char sql[200];
    static const char *const changes[] = {
        "UPDATE report_version SET impression = 'changed'",
        "UPDATE report_version SET findings = ''",
        "UPDATE report_version SET author = 99",
        "UPDATE report_version SET written = 1",
        "UPDATE report_version SET reviewer = 99",
        "UPDATE report_version SET signature = 'AAAA'",
        "UPDATE report_version SET released = 5",
        "UPDATE report_version SET status = 2",
        "DELETE FROM report_version",
    };

    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 2000);
    for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++) {
        snprintf(sql, sizeof sql, "%s WHERE order_id = %lld", changes[i], (long long)id);
        assert_int_not_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    }

    /* A field set once may be set: the clinic's acknowledgement (from 0). */
    snprintf(sql, sizeof sql, "UPDATE report_version SET critical_ack_by = 1 "
             "WHERE order_id = %lld", (long long)id);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    snprintf(sql, sizeof sql, "UPDATE report_version SET critical_ack_by = 2 "
             "WHERE order_id = %lld", (long long)id);
    assert_int_not_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static void test_critical_ack(void **state)
{
    fixture *f = *state;
    int64_t plain = released_order(f, false);
    int64_t id = released_order(f, true);
    report_version v;

    assert_int_equal(report_ack_critical(f->reports, &f->tech, plain, NULL), CP_ERR_INVALID);
    assert_int_equal(report_ack_critical(f->reports, &f->doctor, id, NULL), CP_ERR_FORBIDDEN);
    assert_int_equal(report_ack_critical(f->reports, &f->reviewer, id, NULL),
                     CP_ERR_FORBIDDEN);
    assert_int_equal(report_ack_critical(f->reports, &f->stranger, id, NULL),
                     CP_ERR_FORBIDDEN);
    assert_int_equal(report_ack_critical(f->reports, &f->tech, id, NULL), CP_OK);
    assert_int_equal(report_ack_critical(f->reports, &f->tech, id, NULL), CP_ERR_EXISTS);
    assert_int_equal(report_get(f->reports, id, -1, &v, NULL), CP_OK);
    assert_int_equal(v.critical_ack_by, 30);
    assert_true(v.critical_ack_us > 0);
    report_version_clear(&v);
}

/* --- templates ------------------------------------------------------------------ */

typedef struct names {
    char list[8][DIRECTORY_NAME_MAX + 1];
    int count;
} names;

static cp_status collect_name(void *ctx, const report_template *t)
{
    names *n = ctx;

    snprintf(n->list[n->count++], sizeof n->list[0], "%s", t->name);
    return CP_OK;
}

static void put_template(fixture *f, const char *modality, const char *part, const char *name)
{
    report_template t = { 0 };

    snprintf(t.modality, sizeof t.modality, "%s", modality);
    snprintf(t.body_part, sizeof t.body_part, "%s", part);
    snprintf(t.name, sizeof t.name, "%s", name);
    t.findings = (char *)"Lungs clear.";
    t.impression = (char *)"Normal.";
    assert_int_equal(report_template_put(f->reports, &t, NULL), CP_OK);
    assert_true(t.id > 0);
}

static void test_templates(void **state)
{
    fixture *f = *state;
    names n = { 0 };

    put_template(f, "CT", "CHEST", "ct chest");
    put_template(f, "CT", "", "ct any");
    put_template(f, "", "", "generic");
    put_template(f, "MR", "HEAD", "mr head");

    assert_int_equal(report_template_list(f->reports, "CT", "CHEST", collect_name, &n, NULL),
                     CP_OK);
    assert_int_equal(n.count, 3);
    assert_string_equal(n.list[0], "ct chest");
    assert_string_equal(n.list[1], "ct any");
    assert_string_equal(n.list[2], "generic");

    memset(&n, 0, sizeof n);
    assert_int_equal(report_template_list(f->reports, "MR", "KNEE", collect_name, &n, NULL),
                     CP_OK);
    assert_int_equal(n.count, 1);
    assert_string_equal(n.list[0], "generic");

    memset(&n, 0, sizeof n);
    assert_int_equal(report_template_list(f->reports, "MR", NULL, collect_name, &n, NULL),
                     CP_OK);
    assert_int_equal(n.count, 2);
    assert_string_equal(n.list[0], "mr head");
}

/* --- statistics ------------------------------------------------------------------ */

/*
 * An order read by doctor: pooled at p, claimed at p + c, reported at
 * p + r, released at p + d minutes, due at p + due; reviewed by reviewer
 * after `rejections` rejections.
 */
static void read_order(fixture *f, const char *modality, int64_t doctor, int64_t reviewer,
                       int p, int c, int r, int d, int due, unsigned rejections)
{
    order o = { 0 };

    fake_now = T0 + p * MIN_US;
    snprintf(o.study_uid, sizeof o.study_uid, "1.2.826.0.1.3680043.77.%d", ++f->next_study);
    snprintf(o.modality, sizeof o.modality, "%s", modality);
    o.requesting_id = doctor == 10 ? 1 : 2;
    assert_int_equal(order_create(f->orders, &o, 0, NULL), CP_OK);
    o.state = ORDER_POOLED;
    o.pooled_us = T0 + p * MIN_US;
    o.deadline_us = T0 + (p + due) * MIN_US;
    assert_int_equal(order_transition(f->orders, &o, ORDER_SUBMITTED, "pooled", 0, NULL, NULL),
                     CP_OK);
    o.state = ORDER_CLAIMED;
    o.doctor_id = doctor;
    o.reading_id = 5;
    o.claimed_us = T0 + (p + c) * MIN_US;
    assert_int_equal(order_transition(f->orders, &o, ORDER_POOLED, "grabbed", doctor, NULL,
                                      NULL), CP_OK);
    o.state = ORDER_REPORTED;
    o.reported_us = T0 + (p + r) * MIN_US;
    o.rejections = rejections;
    assert_int_equal(order_transition(f->orders, &o, ORDER_CLAIMED, "reported", doctor, NULL,
                                      NULL), CP_OK);
    o.state = ORDER_APPROVED;
    o.reviewer_id = reviewer;
    assert_int_equal(order_transition(f->orders, &o, ORDER_REPORTED, "approved", reviewer, NULL,
                                      NULL), CP_OK);
    o.state = ORDER_RELEASED;
    o.released_us = T0 + (p + d) * MIN_US;
    assert_int_equal(order_transition(f->orders, &o, ORDER_APPROVED, "released", 0, NULL, NULL),
                     CP_OK);
}

/* A claim of doctor that lapses (or is given back) at T0 + at minutes. */
static void lost_claim(fixture *f, int64_t doctor, bool lapse, int at)
{
    order o = { 0 };

    fake_now = T0 + at * MIN_US;
    snprintf(o.study_uid, sizeof o.study_uid, "1.2.826.0.1.3680043.78.%d", ++f->next_study);
    snprintf(o.modality, sizeof o.modality, "CR");
    o.requesting_id = 1;
    assert_int_equal(order_create(f->orders, &o, 0, NULL), CP_OK);
    o.state = ORDER_POOLED;
    assert_int_equal(order_transition(f->orders, &o, ORDER_SUBMITTED, "pooled", 0, NULL, NULL),
                     CP_OK);
    o.state = ORDER_CLAIMED;
    o.doctor_id = doctor;
    assert_int_equal(order_transition(f->orders, &o, ORDER_POOLED, "grabbed", doctor, NULL,
                                      NULL), CP_OK);
    o.state = ORDER_POOLED;
    o.doctor_id = 0;
    o.returns = 1;
    assert_int_equal(order_transition(f->orders, &o, ORDER_CLAIMED,
                                      lapse ? "lapsed" : "given_back", lapse ? 0 : doctor,
                                      NULL, NULL), CP_OK);
}

static void test_stats(void **state)
{
    fixture *f = *state;
    stats_query q = { .group = STATS_BY_DOCTOR };
    stats_row *rows = NULL;
    size_t count = 0;
    cp_buf csv = CP_BUF_INIT;
    json_t *json = NULL;

    /* Doctor 10: four CTs and one CR; released after 10, 20, 30, 40, 50 minutes. */
    read_order(f, "CT", 10, 20, 0, 1, 5, 10, 30, 0);
    read_order(f, "CT", 10, 20, 100, 2, 10, 20, 30, 1);
    read_order(f, "CT", 10, 10, 200, 3, 15, 30, 30, 0);
    read_order(f, "CT", 10, 20, 300, 4, 20, 40, 30, 0);
    read_order(f, "CR", 10, 20, 400, 5, 25, 50, 30, 1);
    /* Doctor 11: one MR, self-approved, on time. */
    read_order(f, "MR", 11, 11, 500, 1, 2, 3, 30, 0);
    lost_claim(f, 10, false, 600);
    lost_claim(f, 10, true, 610);
    lost_claim(f, 11, true, 620);

    assert_int_equal(stats_compute(f->db, &q, &rows, &count, NULL), CP_OK);
    assert_int_equal(count, 2);
    assert_int_equal(rows[0].key, 10);
    assert_int_equal(rows[0].released, 5);
    assert_int_equal(rows[0].tat_median_us, 30 * MIN_US);
    assert_int_equal(rows[0].tat_p95_us, 50 * MIN_US);
    assert_int_equal(rows[0].write_median_us, 12 * MIN_US);     /* 4, 8, 12, 16, 20 */
    assert_int_equal(rows[0].on_time, 3);
    assert_true(rows[0].on_time_rate > 0.599 && rows[0].on_time_rate < 0.601);
    assert_int_equal(rows[0].reviewed_by_other, 4);
    assert_true(rows[0].review_rate > 0.799 && rows[0].review_rate < 0.801);
    assert_int_equal(rows[0].versions, 7);
    assert_int_equal(rows[0].rejections, 2);
    assert_int_equal(rows[0].give_backs, 1);
    assert_int_equal(rows[0].lapses, 1);
    assert_int_equal(rows[0].pay_units, 4 * 3 + 1);
    assert_int_equal(rows[1].key, 11);
    assert_int_equal(rows[1].released, 1);
    assert_int_equal(rows[1].tat_median_us, 3 * MIN_US);
    assert_int_equal(rows[1].review_rate, 0.0);
    assert_int_equal(rows[1].lapses, 1);
    assert_int_equal(rows[1].pay_units, 4);

    assert_int_equal(stats_to_csv(rows, count, &csv), CP_OK);
    assert_non_null(strstr((char *)csv.data, "group,key,day,released,tat_median_s,"));
    assert_non_null(strstr((char *)csv.data,
                           "\r\ndoctor,10,,5,1800.000000,3000.000000,720.000000,"));
    assert_non_null(strstr((char *)csv.data, ",0.6000,4,0.8000,7,2,0.2857,1,1,13\r\n"));
    cp_buf_free(&csv);
    assert_int_equal(stats_to_json(rows, count, &json), CP_OK);
    assert_int_equal(json_array_size(json), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(json, 0), "pay_units")),
                     13);
    json_decref(json);
    stats_free(rows);

    /* One period: the first three reads only; totals and days. */
    q.group = STATS_TOTAL;
    q.from_us = T0;
    q.to_us = T0 + 250 * MIN_US;
    assert_int_equal(stats_compute(f->db, &q, &rows, &count, NULL), CP_OK);
    assert_int_equal(count, 1);
    assert_int_equal(rows[0].released, 3);
    assert_int_equal(rows[0].tat_median_us, 20 * MIN_US);
    assert_int_equal(rows[0].give_backs, 0);
    stats_free(rows);

    q.group = STATS_BY_DAY;
    q.from_us = 0;
    q.to_us = 0;
    assert_int_equal(stats_compute(f->db, &q, &rows, &count, NULL), CP_OK);
    assert_true(count >= 1);
    assert_int_equal(strlen(rows[0].day), 10);
    stats_free(rows);

    assert_int_equal(stats_weight("CR:1,CT:3,*:2", "US"), 2);
    assert_int_equal(stats_weight("CR:1,CT:3,*:2", "CT"), 3);
    assert_int_equal(stats_group_parse("reading"), STATS_BY_READING);
}

/* --- the report SR ---------------------------------------------------------------- */

static void put16(cp_buf *b, uint16_t v)
{
    uint8_t x[2] = { (uint8_t)v, (uint8_t)(v >> 8) };

    assert_int_equal(cp_buf_append(b, x, 2), CP_OK);
}

static void els(cp_buf *b, uint16_t g, uint16_t e, const char *vr, const char *s)
{
    size_t len = strlen(s);

    put16(b, g);
    put16(b, e);
    assert_int_equal(cp_buf_append(b, vr, 2), CP_OK);
    put16(b, (uint16_t)(len + (len & 1)));
    assert_int_equal(cp_buf_append(b, s, len), CP_OK);
    if (len & 1)
        assert_int_equal(cp_buf_append_byte(b, strcmp(vr, "UI") == 0 ? 0 : ' '), CP_OK);
}

/* A small CT instance of study in Part 10, UTF-8. */
static void ct_instance(cp_buf *b, const char *study)
{
    static const uint8_t preamble[128];
    const char *sop = "1.2.826.0.1.3680043.99.1000.1";

    assert_int_equal(cp_buf_append(b, preamble, sizeof preamble), CP_OK);
    assert_int_equal(cp_buf_append(b, "DICM", 4), CP_OK);
    assert_int_equal(dcm_write_meta_group(CT_CLASS, strlen(CT_CLASS), sop, strlen(sop),
                                          &dcm_ts_explicit_le, b), CP_OK);
    els(b, 0x0008, 0x0005, "CS", "ISO_IR 192");
    els(b, 0x0008, 0x0016, "UI", CT_CLASS);
    els(b, 0x0008, 0x0018, "UI", sop);
    els(b, 0x0008, 0x0020, "DA", "20251124");
    els(b, 0x0008, 0x0030, "TM", "101500");
    els(b, 0x0008, 0x0050, "SH", "ACC1");
    els(b, 0x0008, 0x0060, "CS", "CT");
    els(b, 0x0008, 0x1030, "LO", "CT chest");
    els(b, 0x0010, 0x0010, "PN", "Wang^Fang=王^芳");
    els(b, 0x0010, 0x0020, "LO", "P1");
    els(b, 0x0010, 0x0030, "DA", "19700101");
    els(b, 0x0010, 0x0040, "CS", "F");
    els(b, 0x0020, 0x000D, "UI", study);
    els(b, 0x0020, 0x000E, "UI", "1.2.826.0.1.3680043.99.1000");
    els(b, 0x0020, 0x0010, "SH", "S1");
}

typedef struct found {
    char blob[INDEX_BLOB_KEY_MAX + 1];
} found;

static cp_status found_blob(void *ctx, const index_row *row)
{
    found *fd = ctx;

    snprintf(fd->blob, sizeof fd->blob, "%s", row->rec.instance.blob_key);
    return CP_OK;
}

/* The text of the content item with concept code `code` in the root's Content Sequence. */
static bool content_text(const dcm_dataset *ds, const char *code, char *out, size_t cap)
{
    const dcm_element *seq = dcm_dataset_get(ds, DCM_ContentSequence);

    for (uint32_t i = 0; seq != NULL && i < seq->item_count; i++) {
        const dcm_dataset *item = seq->items[i];
        const dcm_element *name = dcm_dataset_get(item, DCM_ConceptNameCodeSequence);
        char value[32];

        if (name == NULL || name->item_count != 1)
            continue;
        if (dcm_dataset_get_string(name->items[0], DCM_CodeValue, value, sizeof value) ==
                CP_OK && strcmp(value, code) == 0)
            return dcm_dataset_get_string(item, DCM_TextValue, out, cap) == CP_OK;
    }
    return false;
}

/* Runs a command on the file; its exit status, or -1 when the tool is missing. */
static int run_tool(const char *tool, const char *cmd)
{
    char which[128];

    snprintf(which, sizeof which, "command -v %s >/dev/null 2>&1", tool);
    if (system(which) != 0)
        return -1;
    return system(cmd);
}

/* Finds the SR in the index, reads its blob, checks it and keeps a copy at path. */
static void read_sr_back(fixture *f, store *st, index_db *idx, const char *sop,
                         const char *study, char *path, size_t path_cap)
{
    cp_buf b = CP_BUF_INIT;
    char text[256];
    index_term term = { "SOPInstanceUID", sop };
    index_query_spec q = { .level = INDEX_LEVEL_INSTANCE, .terms = &term,
                           .term_count = 1 };
    found fd = { { 0 } };
    store_reader *r = NULL;
    uint8_t chunk[4096];
    size_t got;
    dcm_file *file = NULL;
    dcm_source *src;
    FILE *out;

    assert_int_equal(index_query(idx, &q, found_blob, &fd, NULL), CP_OK);
    assert_true(fd.blob[0] != '\0');
    assert_int_equal(store_open(st, fd.blob, &r, NULL), CP_OK);
    do {
        assert_int_equal(store_read(r, chunk, sizeof chunk, &got, NULL), CP_OK);
        assert_int_equal(cp_buf_append(&b, chunk, got), CP_OK);
    } while (got > 0);
    store_close(r);

    src = dcm_source_from_memory(b.data, b.len);
    assert_int_equal(dcm_file_read(src, NULL, &file, NULL), CP_OK);
    assert_int_equal(dcm_dataset_get_string(file->dataset, DCM_TAG(0x0008, 0x0016), text,
                                            sizeof text), CP_OK);
    assert_string_equal(text, SR_BASIC_TEXT_CLASS);
    assert_int_equal(dcm_dataset_get_string(file->dataset, DCM_TAG(0x0020, 0x000D), text,
                                            sizeof text), CP_OK);
    assert_string_equal(text, study);
    assert_int_equal(dcm_dataset_get_string(file->dataset, DCM_TAG(0x0008, 0x0060), text,
                                            sizeof text), CP_OK);
    assert_string_equal(text, "SR");
    assert_int_equal(dcm_dataset_get_string(file->dataset, DCM_TAG(0x0010, 0x0010), text,
                                            sizeof text), CP_OK);
    assert_string_equal(text, "Wang^Fang=王^芳");
    assert_int_equal(dcm_dataset_get_string(file->dataset, DCM_VerificationFlag, text,
                                            sizeof text), CP_OK);
    assert_string_equal(text, "VERIFIED");
    assert_true(content_text(file->dataset, "121071", text, sizeof text));
    assert_string_equal(text, "Nodule 8 mm, right upper lobe \\ see image 12.");
    assert_true(content_text(file->dataset, "121073", text, sizeof text));
    assert_string_equal(text, "Suspicious nodule; CT follow-up.");
    assert_true(content_text(file->dataset, "CRITICAL", text, sizeof text));
    {
        const dcm_element *obs = dcm_dataset_get(file->dataset,
                                                 DCM_VerifyingObserverSequence);

        assert_non_null(obs);
        assert_int_equal(obs->item_count, 1);
        assert_int_equal(dcm_dataset_get_string(obs->items[0], DCM_VerifyingObserverName,
                                                text, sizeof text), CP_OK);
        assert_string_equal(text, "Li^Ming");
    }
    dcm_file_destroy(file);
    dcm_source_destroy(src);

    /* CLOUDPACS_REPORT_SR_OUT names where to keep a copy, for a look by hand. */
    if (getenv("CLOUDPACS_REPORT_SR_OUT") != NULL)
        snprintf(path, path_cap, "%s", getenv("CLOUDPACS_REPORT_SR_OUT"));
    else
        snprintf(path, path_cap, "%s/report-sr.dcm", f->root);
    out = fopen(path, "wb");
    assert_non_null(out);
    assert_int_equal(fwrite(b.data, 1, b.len, out), b.len);
    fclose(out);
    cp_buf_free(&b);
}

/* dciodvfy and pydicom on the kept file, when they are installed. */
static void external_checks(const char *path)
{
    char cmd[512];

    /* dciodvfy (dicom3tools): no error against the Basic Text SR IOD. */
    snprintf(cmd, sizeof cmd, "dciodvfy '%s' 2>&1 | grep -q '^Error' && exit 1; exit 0", path);
    assert_int_not_equal(run_tool("dciodvfy", cmd), 1 << 8);

    /* pydicom (the system Python): the texts parse back. */
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c 'import sys, pydicom; d = pydicom.dcmread(sys.argv[1]);"
             " t = [i.TextValue for i in d.ContentSequence];"
             " sys.exit(0 if d.VerificationFlag == \"VERIFIED\" and len(t) == 3"
             " and t[1] == \"Suspicious nodule; CT follow-up.\" else 1)' '%s'", path);
    if (access("/usr/bin/python3", X_OK) == 0)
        assert_int_equal(system(cmd), 0);
}

static void test_sr_stored_and_parsed(void **state)
{
    fixture *f = *state;
    const char *study = "1.2.826.0.1.3680043.99.1000.0";
    char blobs[128];
    char index_path[128];
    char dir_path[128];
    char sop[INDEX_UID_MAX + 1];
    char path[160];
    store *st = NULL;
    index_db *idx = NULL;
    archive *arc = NULL;
    directory *dir = NULL;
    archive_config cfg = { 0 };
    archive_source_info info = { .source = "CLINIC_A", .institution_id = 1 };
    archive_ingest *in = NULL;
    archive_result res;
    directory_user u = { 0 };
    directory_institution inst = { 0 };
    cp_buf b = CP_BUF_INIT;
    report_version v;
    order o;
    int64_t id;

    snprintf(blobs, sizeof blobs, "%s/blobs", f->root);
    snprintf(index_path, sizeof index_path, "%s/pacs.sqlite", f->root);
    snprintf(dir_path, sizeof dir_path, "%s/directory.sqlite", f->root);
    cfg.default_source.charset.detect = true;
    cfg.fs_root = blobs;
    assert_int_equal(store_open_fs(blobs, &st, NULL), CP_OK);
    assert_int_equal(index_open_sqlite(index_path, &idx, NULL), CP_OK);
    assert_int_equal(archive_create(st, idx, &cfg, &arc, NULL), CP_OK);
    assert_int_equal(directory_open_sqlite(dir_path, &dir, NULL), CP_OK);

    inst.kind = DIRECTORY_CENTRE;
    snprintf(inst.code, sizeof inst.code, "centre");
    snprintf(inst.name, sizeof inst.name, "Reading Centre");
    assert_int_equal(directory_institution_create(dir, &inst, NULL), CP_OK);
    snprintf(u.username, sizeof u.username, "li");
    snprintf(u.display_name, sizeof u.display_name, "Li^Ming");
    u.institution_id = inst.id;
    u.roles = ROLE_RADIOLOGIST | ROLE_REVIEWER;
    u.title = 3;
    assert_int_equal(directory_user_create(dir, &u, "$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA",
                                           NULL), CP_OK);

    /* The study first, through the archive. */
    ct_instance(&b, study);
    assert_int_equal(archive_ingest_begin(arc, &info, &in), CP_OK);
    assert_int_equal(archive_ingest_write(in, b.data, b.len), CP_OK);
    assert_int_equal(archive_ingest_finish(in, &res), CP_OK);
    assert_true(archive_outcome_ok(res.outcome));
    cp_buf_free(&b);

    /* A released, critical report of it, reviewed by the directory's user. */
    f->reviewer.id = u.id;
    id = claimed_order(f, f->doctor.id, study);
    assert_int_equal(report_save_draft(f->reports, &f->doctor, id,
                                       "Nodule 8 mm, right upper lobe \\ see image 12.",
                                       "Suspicious nodule; CT follow-up.", true, NULL), CP_OK);
    assert_int_equal(report_submit(f->reports, &f->doctor, id, false, NULL, NULL), CP_OK);
    assert_int_equal(report_review(f->reports, &f->reviewer, id, true, NULL, NULL), CP_OK);
    assert_int_equal(report_release(f->reports, id, 0, NULL), CP_OK);
    assert_int_equal(order_get(f->orders, id, &o, NULL), CP_OK);
    o.reading_id = inst.id;
    assert_int_equal(report_get(f->reports, id, -1, &v, NULL), CP_OK);

    assert_int_equal(sr_store_report(arc, idx, dir, &o, &v, sop, NULL), CP_OK);
    assert_int_equal(strncmp(sop, "2.25.", 5), 0);

    read_sr_back(f, st, idx, sop, study, path, sizeof path);
    external_checks(path);

    report_version_clear(&v);
    directory_close(dir);
    archive_destroy(arc);
    index_destroy(idx);
    store_destroy(st);
}

static void test_uid_new(void **state)
{
    char a[INDEX_UID_MAX + 1];
    char b[INDEX_UID_MAX + 1];

    (void)state;
    sr_uid_new(a);
    sr_uid_new(b);
    assert_string_not_equal(a, b);
    assert_true(strlen(a) <= 64 && strlen(a) > 10);
    assert_int_equal(strncmp(a, "2.25.", 5), 0);
    assert_true(a[5] != '0');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lock_two_principals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reviewer_of_reading_centre, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repair_after_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_draft_submit_reject_resubmit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_self_approval, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_signature, setup, teardown),
        cmocka_unit_test_setup_teardown(test_versions_cannot_change, setup, teardown),
        cmocka_unit_test_setup_teardown(test_critical_ack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_templates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sr_stored_and_parsed, setup, teardown),
        cmocka_unit_test(test_uid_new),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

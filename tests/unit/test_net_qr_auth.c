/*
 * test_net_qr_auth.c - the authorisation hooks of the DICOM server and of
 * query/retrieve (net/scp.h scp_authoriser, net/qr.h qr_auth; PS3.8
 * 9.3.4 rejections, PS3.4 C.4): an scp with qr over a SQLite index of
 * three studies of two institutions, driven by our SCU. The authoriser
 * turns calling AE titles into identities; the scope limits C-FIND and
 * retrieves to an identity's institutions, the row check hides a
 * modality, a refused scope answers 0124H, hidden studies give a retrieve
 * no sub-operation, the store consumer and qr see the identity, every
 * identity is released, and a server without hooks answers as before.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "index/index.h"
#include "net/dimse.h"
#include "net/qr.h"
#include "net/scp.h"
#include "net/scu.h"
#include "store/store.h"

#define STUDY_FIND "1.2.840.10008.5.1.4.1.2.2.1"
#define STUDY_GET "1.2.840.10008.5.1.4.1.2.2.3"
#define CT_STORAGE "1.2.840.10008.5.1.4.1.1.2"
#define EXPLICIT_LE "1.2.840.10008.1.2.1"
#define ROOT "1.2.826.0.1.3680043.8.498.92"

/* What the test authoriser hands out: the institution and an optional modality. */
typedef struct ident {
    char ae[PDU_AE_SIZE];
    int64_t institution;
    const char *only_modality;          /* NULL: every modality */
    bool refuse_scope;
} ident;

/* What the hooks saw, read by the tests (the hooks run on association threads). */
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static int created, released;
static void *store_identity;
static uint64_t find_matches;
static size_t retrieve_studies;
static char retrieve_study[INDEX_UID_MAX + 1];
static uint16_t audit_status;
static int audits;

typedef struct server {
    scp *s;
    qr *q;
    pthread_t th;
    uint16_t port;
} server;

static char tmpdir[256];
static index_db *idx;
static store *st;
static server guarded, open_srv;

/* --- the hooks ---------------------------------------------------------- */

static scp_auth_result authorise(void *ctx, const scp_assoc_info *info, unsigned *allow,
                                 void **identity)
{
    ident *id;

    (void)ctx;
    if (strcmp(info->calling_ae, "DENY") == 0)
        return SCP_AUTH_REJECT;
    if (strcmp(info->calling_ae, "BUSY") == 0)
        return SCP_AUTH_REJECT_TRANSIENT;
    if (strncmp(info->calling_ae, "CLIN", 4) != 0 && strcmp(info->calling_ae, "RAD") != 0 &&
        strcmp(info->calling_ae, "NOBODY") != 0)
        return SCP_AUTH_REJECT_CALLING_AE;
    id = calloc(1, sizeof *id);
    assert_non_null(id);
    snprintf(id->ae, sizeof id->ae, "%s", info->calling_ae);
    id->institution = strcmp(info->calling_ae, "CLIN2") == 0 ? 2 : 1;
    id->only_modality = strcmp(info->calling_ae, "RAD") == 0 ? "CR" : NULL;
    id->refuse_scope = strcmp(info->calling_ae, "NOBODY") == 0;
    *allow = SCP_ALLOW_ECHO | SCP_ALLOW_STORE | SCP_ALLOW_QUERY | SCP_ALLOW_RETRIEVE;
    *identity = id;
    pthread_mutex_lock(&seen_lock);
    created++;
    pthread_mutex_unlock(&seen_lock);
    return SCP_AUTH_ACCEPT;
}

static void release(void *ctx, void *identity)
{
    (void)ctx;
    free(identity);
    pthread_mutex_lock(&seen_lock);
    released++;
    pthread_mutex_unlock(&seen_lock);
}

static bool scope(void *ctx, void *identity, index_query_spec *spec)
{
    ident *id = identity;

    (void)ctx;
    if (id->refuse_scope)
        return false;
    spec->institutions = &id->institution;
    spec->institution_count = 1;
    return true;
}

static bool visible(void *ctx, void *identity, int64_t institution, const char *modality)
{
    const ident *id = identity;

    (void)ctx;
    return institution == id->institution &&
           (id->only_modality == NULL || strcmp(modality, id->only_modality) == 0);
}

static void audit(void *ctx, void *identity, const qr_audit_info *info)
{
    (void)ctx;
    assert_non_null(identity);
    pthread_mutex_lock(&seen_lock);
    audits++;
    audit_status = info->status;
    if (info->command_field == DIMSE_C_FIND_RQ) {
        find_matches = info->matches;
    } else {
        retrieve_studies = info->study_count;
        snprintf(retrieve_study, sizeof retrieve_study, "%s",
                 info->study_count > 0 ? info->studies[0].study_uid : "");
    }
    pthread_mutex_unlock(&seen_lock);
}

/* A store consumer that keeps nothing and notes the identity it is given. */
static int store_op;

static cp_status sink_begin(void *ctx, const scp_store_info *info, void **op,
                             uint16_t *status)
{
    (void)ctx;
    (void)status;
    pthread_mutex_lock(&seen_lock);
    store_identity = info->identity;
    pthread_mutex_unlock(&seen_lock);
    *op = &store_op;
    return CP_OK;
}

static cp_status sink_write(void *op, const void *data, size_t len)
{
    (void)op;
    (void)data;
    (void)len;
    return CP_OK;
}

static uint16_t sink_finish(void *op, char *comment, size_t size)
{
    (void)op;
    (void)comment;
    (void)size;
    return DIMSE_SUCCESS;
}

static void sink_abort(void *op)
{
    (void)op;
}

/* --- fixtures ---------------------------------------------------------- */

static void put(const char *study, const char *modality, int k, int64_t institution)
{
    index_instance_record r;
    index_put_result res;

    memset(&r, 0, sizeof r);
    snprintf(r.patient.id, sizeof r.patient.id, "PID-%s", study);
    snprintf(r.study.uid, sizeof r.study.uid, "%s.%s", ROOT, study);
    snprintf(r.study.date, sizeof r.study.date, "20240101");
    snprintf(r.series.uid, sizeof r.series.uid, "%s.%s.1", ROOT, study);
    snprintf(r.series.modality, sizeof r.series.modality, "%s", modality);
    r.series.number = 1;
    snprintf(r.instance.sop_uid, sizeof r.instance.sop_uid, "%s.%s.1.%d", ROOT, study, k);
    snprintf(r.instance.sop_class_uid, sizeof r.instance.sop_class_uid, CT_STORAGE);
    snprintf(r.instance.transfer_syntax, sizeof r.instance.transfer_syntax, EXPLICIT_LE);
    r.instance.number = k;
    snprintf(r.instance.blob_key, sizeof r.instance.blob_key, "b/%s-%d.dcm", study, k);
    memset(r.instance.hash, k, sizeof r.instance.hash);
    snprintf(r.instance.source, sizeof r.instance.source, "T");
    r.instance.institution_id = institution;
    r.instance.received_us = 1000;
    assert_int_equal(index_put_instance(idx, &r, 0, &res, NULL), CP_OK);
}

static void *run_server(void *arg)
{
    server *sv = arg;

    scp_run(sv->s, NULL);
    return NULL;
}

static void start(server *sv, bool hooks)
{
    static const scp_remote_ae finder = {
        "FINDER", "127.0.0.1", 104,
        SCP_ALLOW_ECHO | SCP_ALLOW_STORE | SCP_ALLOW_QUERY | SCP_ALLOW_RETRIEVE,
    };
    scp_config sc;
    qr_config qc;

    memset(&qc, 0, sizeof qc);
    qc.idx = idx;
    qc.st = st;
    qc.ae_title = "QRAUTH";
    if (hooks)
        qc.auth = (qr_auth){ scope, visible, audit, NULL };
    assert_int_equal(qr_create(&qc, &sv->q), CP_OK);

    memset(&sc, 0, sizeof sc);
    snprintf(sc.ae_title, sizeof sc.ae_title, "QRAUTH");
    sc.accept_unknown = true;
    sc.aes = &finder;
    sc.ae_count = 1;
    sc.qr.run = qr_serve;
    sc.qr.ctx = sv->q;
    sc.store = (scp_store_consumer){ sink_begin, sink_write, sink_finish, sink_abort,
                                     NULL };
    if (hooks)
        sc.authoriser = (scp_authoriser){ authorise, release, NULL };
    assert_int_equal(scp_create(&sc, &sv->s, NULL), CP_OK);
    assert_int_equal(scp_listen(sv->s, NULL), CP_OK);
    sv->port = scp_port(sv->s);
    assert_int_equal(pthread_create(&sv->th, NULL, run_server, sv), 0);
}

static void stop(server *sv)
{
    scp_stop(sv->s);
    pthread_join(sv->th, NULL);
    scp_destroy(sv->s);
    qr_destroy(sv->q);
}

static int setup(void **state)
{
    char path[300];

    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cp_qr_auth_XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    snprintf(path, sizeof path, "%s/index.sqlite", tmpdir);
    if (index_open_sqlite(path, &idx, NULL) != CP_OK)
        return -1;
    snprintf(path, sizeof path, "%s/blobs", tmpdir);
    if (store_open_fs(path, &st, NULL) != CP_OK)
        return -1;
    put("1", "CT", 1, 1);
    put("2", "CR", 1, 1);
    put("3", "CR", 1, 2);
    start(&guarded, true);
    start(&open_srv, false);
    return 0;
}

static int teardown(void **state)
{
    char cmd[320];
    int rc;

    (void)state;
    stop(&guarded);
    stop(&open_srv);
    index_destroy(idx);
    store_destroy(st);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    rc = system(cmd);
    return rc == 0 ? 0 : -1;
}

/* --- an SCU ------------------------------------------------------------ */

static cp_status connect_as(const server *sv, const char *calling, scu **u)
{
    static const char *const ts[] = { EXPLICIT_LE };
    const scu_proposal props[] = {
        { STUDY_FIND, ts, 1 }, { STUDY_GET, ts, 1 }, { CT_STORAGE, ts, 1 },
        { SCU_VERIFICATION_UID, ts, 1 },
    };
    scu_config cfg;

    memset(&cfg, 0, sizeof cfg);
    cfg.calling_ae = calling;
    cfg.called_ae = "QRAUTH";
    cfg.host = "127.0.0.1";
    cfg.port = sv->port;
    return scu_connect(&cfg, props, sizeof props / sizeof props[0], u, NULL);
}

/* Appends one Explicit VR Little Endian element with a short header. */
static void elem(cp_buf *b, uint16_t group, uint16_t element, const char *vr, const char *value)
{
    size_t len = strlen(value), padded = len + (len & 1);
    uint8_t h[8] = { (uint8_t)group, (uint8_t)(group >> 8), (uint8_t)element,
                     (uint8_t)(element >> 8), (uint8_t)vr[0], (uint8_t)vr[1],
                     (uint8_t)padded, (uint8_t)(padded >> 8) };

    assert_int_equal(cp_buf_append(b, h, sizeof h), CP_OK);
    assert_int_equal(cp_buf_append(b, value, len), CP_OK);
    if (padded != len)
        assert_int_equal(cp_buf_append_byte(b, strcmp(vr, "UI") == 0 ? 0 : ' '), CP_OK);
}

/* Sends a request with a study-level identifier; the final response. */
static void request(scu *u, uint16_t field, const char *sop_class, const char *study,
                    size_t *pending, dimse_command *final)
{
    const char *ts = NULL;
    uint8_t pc = scu_context_for(u, sop_class, &ts);
    dimse_command cmd;
    cp_buf id = CP_BUF_INIT, data = CP_BUF_INIT;

    assert_int_not_equal(pc, 0);
    elem(&id, 0x0008, 0x0052, "CS", "STUDY");
    elem(&id, 0x0020, 0x000D, "UI", study);
    memset(&cmd, 0, sizeof cmd);
    cmd.command_field = field;
    cmd.data_set_type = 0x0000;
    cmd.fields = DIMSE_F_AFFECTED_SOP_CLASS | DIMSE_F_PRIORITY;
    snprintf(cmd.affected_sop_class, sizeof cmd.affected_sop_class, "%s", sop_class);
    assert_int_equal(scu_send_command(u, pc, &cmd, NULL), CP_OK);
    assert_int_equal(scu_send_data(u, pc, id.data, id.len, true, NULL), CP_OK);
    *pending = 0;
    for (;;) {
        assert_int_equal(scu_wait_response_data(u, final, &data, NULL), CP_OK);
        if (final->status != DIMSE_PENDING && final->status != 0xFF01)
            break;
        (*pending)++;
    }
    cp_buf_free(&id);
    cp_buf_free(&data);
}

static size_t find_as(const server *sv, const char *calling, const char *study,
                      uint16_t *status)
{
    scu *u = NULL;
    dimse_command final;
    size_t n;

    assert_int_equal(connect_as(sv, calling, &u), CP_OK);
    request(u, DIMSE_C_FIND_RQ, STUDY_FIND, study, &n, &final);
    *status = final.status;
    scu_release(u, NULL);
    scu_destroy(u);
    return n;
}

/* Waits until the server has released every identity it made. */
static void wait_released(void)
{
    for (int i = 0; i < 200; i++) {
        int done;

        pthread_mutex_lock(&seen_lock);
        done = created == released;
        pthread_mutex_unlock(&seen_lock);
        if (done)
            return;
        usleep(10000);
    }
    fail_msg("identities not released: %d made, %d released", created, released);
}

static int audit_count(void)
{
    int n;

    pthread_mutex_lock(&seen_lock);
    n = audits;
    pthread_mutex_unlock(&seen_lock);
    return n;
}

/* The audit hook runs once the final response is out: waits for the nth. */
static void wait_audits(int n)
{
    for (int i = 0; i < 200 && audit_count() < n; i++)
        usleep(10000);
    assert_true(audit_count() >= n);
}

/* --- tests ------------------------------------------------------------- */

static void find_limited_to_institution(void **state)
{
    uint16_t status;
    int n;

    (void)state;
    assert_int_equal(find_as(&guarded, "CLIN1", "", &status), 2);
    assert_int_equal(status, DIMSE_SUCCESS);
    n = audit_count();
    assert_int_equal(find_as(&guarded, "CLIN2", "", &status), 1);
    assert_int_equal(status, DIMSE_SUCCESS);
    wait_audits(n + 1);
    pthread_mutex_lock(&seen_lock);
    assert_int_equal(find_matches, 1);
    pthread_mutex_unlock(&seen_lock);
}

static void find_rows_filtered_by_visibility(void **state)
{
    uint16_t status;

    (void)state;
    /* Institution 1 holds a CT and a CR study; only CR is visible to RAD. */
    assert_int_equal(find_as(&guarded, "RAD", "", &status), 1);
    assert_int_equal(status, DIMSE_SUCCESS);
    /* A hidden study asked for by its UID does not match: no error. */
    assert_int_equal(find_as(&guarded, "CLIN1", ROOT ".3", &status), 0);
    assert_int_equal(status, DIMSE_SUCCESS);
}

static void refused_scope_answers_not_authorized(void **state)
{
    uint16_t status;
    int n = audit_count();

    (void)state;
    assert_int_equal(find_as(&guarded, "NOBODY", "", &status), 0);
    assert_int_equal(status, DIMSE_NOT_AUTHORIZED);
    wait_audits(n + 1);
    pthread_mutex_lock(&seen_lock);
    assert_int_equal(audit_status, DIMSE_NOT_AUTHORIZED);
    pthread_mutex_unlock(&seen_lock);
}

static void get_of_hidden_study_has_no_suboperations(void **state)
{
    scu *u = NULL;
    dimse_command final;
    size_t pending;
    int n;

    (void)state;
    assert_int_equal(connect_as(&guarded, "CLIN1", &u), CP_OK);
    n = audit_count();
    request(u, DIMSE_C_GET_RQ, STUDY_GET, ROOT ".3", &pending, &final);
    assert_int_equal(final.status, DIMSE_SUCCESS);
    assert_int_equal(final.completed + final.failed + final.warning, 0);
    assert_int_equal(pending, 0);
    wait_audits(n + 1);
    pthread_mutex_lock(&seen_lock);
    assert_int_equal(retrieve_studies, 0);
    pthread_mutex_unlock(&seen_lock);

    /*
     * Its own study is listed: one sub-operation, failed since this SCU
     * took no storage SCP role (PS3.4 C.4.3.3), which needs no blob.
     */
    request(u, DIMSE_C_GET_RQ, STUDY_GET, ROOT ".1", &pending, &final);
    assert_int_equal(final.failed, 1);
    wait_audits(n + 2);
    pthread_mutex_lock(&seen_lock);
    assert_int_equal(retrieve_studies, 1);
    assert_string_equal(retrieve_study, ROOT ".1");
    pthread_mutex_unlock(&seen_lock);
    scu_release(u, NULL);
    scu_destroy(u);
}

static void rejections_by_the_authoriser(void **state)
{
    scu *u = NULL;

    (void)state;
    assert_int_not_equal(connect_as(&guarded, "DENY", &u), CP_OK);
    assert_null(u);
    assert_int_not_equal(connect_as(&guarded, "STRANGER", &u), CP_OK);
    assert_int_not_equal(connect_as(&guarded, "BUSY", &u), CP_OK);
    /* The server serves the next caller. */
    assert_int_equal(connect_as(&guarded, "CLIN1", &u), CP_OK);
    scu_release(u, NULL);
    scu_destroy(u);
}

static void store_consumer_sees_identity(void **state)
{
    static const uint8_t body[] = { 0x08, 0x00, 0x60, 0x00, 'C', 'S', 2, 0, 'C', 'T' };
    const char *ts = NULL;
    scu *u = NULL;
    dimse_command cmd, rsp;
    uint8_t pc;

    (void)state;
    pthread_mutex_lock(&seen_lock);
    store_identity = NULL;
    pthread_mutex_unlock(&seen_lock);
    assert_int_equal(connect_as(&guarded, "CLIN2", &u), CP_OK);
    pc = scu_context_for(u, CT_STORAGE, &ts);
    assert_int_not_equal(pc, 0);
    memset(&cmd, 0, sizeof cmd);
    cmd.command_field = DIMSE_C_STORE_RQ;
    cmd.data_set_type = 0x0000;
    cmd.fields = DIMSE_F_AFFECTED_SOP_CLASS | DIMSE_F_AFFECTED_SOP_INSTANCE | DIMSE_F_PRIORITY;
    snprintf(cmd.affected_sop_class, sizeof cmd.affected_sop_class, CT_STORAGE);
    snprintf(cmd.affected_sop_instance, sizeof cmd.affected_sop_instance, ROOT ".9.9");
    assert_int_equal(scu_send_command(u, pc, &cmd, NULL), CP_OK);
    assert_int_equal(scu_send_data(u, pc, body, sizeof body, true, NULL), CP_OK);
    assert_int_equal(scu_wait_response(u, &rsp, NULL), CP_OK);
    assert_int_equal(rsp.status, DIMSE_SUCCESS);
    pthread_mutex_lock(&seen_lock);
    assert_non_null(store_identity);
    assert_string_equal(((ident *)store_identity)->ae, "CLIN2");
    pthread_mutex_unlock(&seen_lock);
    scu_release(u, NULL);
    scu_destroy(u);
    wait_released();
}

static void without_hooks_everything_as_before(void **state)
{
    uint16_t status;
    int before;

    (void)state;
    pthread_mutex_lock(&seen_lock);
    before = audits;
    pthread_mutex_unlock(&seen_lock);
    assert_int_equal(find_as(&open_srv, "FINDER", "", &status), 3);
    assert_int_equal(status, DIMSE_SUCCESS);
    pthread_mutex_lock(&seen_lock);
    assert_int_equal(audits, before);
    pthread_mutex_unlock(&seen_lock);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(find_limited_to_institution),
        cmocka_unit_test(find_rows_filtered_by_visibility),
        cmocka_unit_test(refused_scope_answers_not_authorized),
        cmocka_unit_test(get_of_hidden_study_has_no_suboperations),
        cmocka_unit_test(rejections_by_the_authoriser),
        cmocka_unit_test(store_consumer_sees_identity),
        cmocka_unit_test(without_hooks_everything_as_before),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}

/*
 * test_net_assoc.c - the PS3.8 9.2 state machine (net/assoc.c) driven
 * through a memory transport: the bytes the peer sends are queued, the
 * bytes we send are decoded and checked. Covers the rows of Table 9-10
 * an acceptor meets (and the requestor's for collisions): association and
 * release, every rejection reason, aborts both ways, unexpected and
 * unrecognized PDUs, ARTIM and idle expiry, P-DATA fragmentation and
 * reassembly at tiny maximum lengths, release collisions.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/limits.h"
#include "net/assoc.h"
#include "net/pdu.h"

#define CT_STORAGE "1.2.840.10008.5.1.4.1.1.2"
#define VERIFICATION "1.2.840.10008.1.1"
#define IMPLICIT_LE "1.2.840.10008.1.2"
#define EXPLICIT_LE "1.2.840.10008.1.2.1"
#define JPEG_BASELINE "1.2.840.10008.1.2.4.50"

/* --- the memory transport ----------------------------------------------- */

typedef struct mem_tp {
    cp_buf in;              /* what the peer sent, not yet read */
    size_t pos;
    bool eof;               /* at the end of `in`: closed (true) or silent (false) */
    size_t chunk;           /* most bytes per read, to split PDUs across reads */
    cp_buf out;             /* what we sent */
    bool shut;
} mem_tp;

static cp_status mem_read(void *ctx, void *buf, size_t len, size_t *got, int timeout_ms)
{
    mem_tp *m = ctx;
    size_t left = m->in.len - m->pos;

    (void)timeout_ms;
    *got = 0;
    if (m->shut)
        return CP_OK;
    if (left == 0)
        return m->eof ? CP_OK : CP_ERR_AGAIN;
    if (len > left)
        len = left;
    if (m->chunk != 0 && len > m->chunk)
        len = m->chunk;
    memcpy(buf, m->in.data + m->pos, len);
    m->pos += len;
    *got = len;
    return CP_OK;
}

static cp_status mem_write(void *ctx, const void *data, size_t len, int timeout_ms)
{
    mem_tp *m = ctx;

    (void)timeout_ms;
    if (m->shut)
        return CP_ERR_IO;
    return cp_buf_append(&m->out, data, len);
}

static void mem_shutdown(void *ctx)
{
    mem_tp *m = ctx;

    m->shut = true;
}

static const assoc_transport mem_transport = { mem_read, mem_write, mem_shutdown };

/* --- helpers ------------------------------------------------------------ */

typedef struct fixture {
    mem_tp tp;
    assoc *a;
    assoc_policy policy;
    assoc_params params;
    bool allow_calling;
    assoc_identity_result identity_answer;
    size_t out_pos;         /* bytes of tp.out already checked */
} fixture;

static bool allow_calling(void *ctx, const char *calling)
{
    fixture *f = ctx;

    (void)calling;
    return f->allow_calling;
}

static assoc_identity_result identity_hook(void *ctx, const char *calling,
                                           const pdu_identity_rq *rq, uint8_t *resp,
                                           size_t *resp_len)
{
    fixture *f = ctx;

    assert_string_equal(calling, "MODALITY");
    assert_int_equal(rq->type, PDU_IDENTITY_USERNAME_PASSCODE);
    assert_int_equal(rq->primary_len, 5);
    memcpy(resp, "token", 5);
    *resp_len = 5;
    return f->identity_answer;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);

    f->allow_calling = true;
    f->identity_answer = ASSOC_IDENTITY_ACCEPT;
    f->policy.ae_title = "CLOUDPACS";
    f->policy.calling_allowed = allow_calling;
    f->policy.calling_ctx = f;
    f->policy.services = ASSOC_SERVICE_VERIFICATION | ASSOC_SERVICE_STORAGE;
    f->policy.identity = identity_hook;
    f->policy.identity_ctx = f;
    f->params.max_pdu = 16384;
    f->params.artim_ms = 1000;
    f->params.idle_ms = 1000;
    f->a = assoc_create(&mem_transport, &f->tp, &f->params);
    assert_non_null(f->a);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    assoc_destroy(f->a);
    cp_buf_free(&f->tp.in);
    cp_buf_free(&f->tp.out);
    free(f);
    return 0;
}

static pdu_uid ts_list[3];
static pdu_pres_ctx rq_pcs[4];
static pdu_role rq_roles[1];
static const uint8_t user_name[] = "alice";
static const uint8_t passcode[] = "secret";

/* A request like a modality's: Verification, CT, an unknown class, CT in a private syntax. */
static void make_rq(pdu_assoc *rq, const char *called, const char *calling)
{
    memset(rq, 0, sizeof *rq);
    memset(rq_pcs, 0, sizeof rq_pcs);
    rq->protocol_version = PDU_PROTOCOL_VERSION;
    strcpy(rq->called_ae, called);
    strcpy(rq->calling_ae, calling);
    strcpy(rq->app_context.value, PDU_APPLICATION_CONTEXT);
    strcpy(ts_list[0].value, JPEG_BASELINE);
    strcpy(ts_list[1].value, IMPLICIT_LE);
    strcpy(ts_list[2].value, "1.2.3.4.5.6");
    rq_pcs[0].id = 1;
    strcpy(rq_pcs[0].abstract_syntax.value, VERIFICATION);
    rq_pcs[0].ts = &ts_list[1];
    rq_pcs[0].ts_count = 1;
    rq_pcs[1].id = 3;
    strcpy(rq_pcs[1].abstract_syntax.value, CT_STORAGE);
    rq_pcs[1].ts = &ts_list[0];
    rq_pcs[1].ts_count = 2;
    rq_pcs[2].id = 5;
    strcpy(rq_pcs[2].abstract_syntax.value, "1.2.3.999");
    rq_pcs[2].ts = &ts_list[1];
    rq_pcs[2].ts_count = 1;
    rq_pcs[3].id = 7;
    strcpy(rq_pcs[3].abstract_syntax.value, CT_STORAGE);
    rq_pcs[3].ts = &ts_list[2];
    rq_pcs[3].ts_count = 1;
    rq->pcs = rq_pcs;
    rq->pc_count = 4;
    rq->has_user_info = true;
    rq->user.has_max_length = true;
    rq->user.max_length = 16384;
    strcpy(rq->user.impl_class_uid.value, "1.2.3.4");
    rq->user.has_async_window = true;
    rq->user.max_ops_invoked = 5;
    rq->user.max_ops_performed = 5;
    memset(rq_roles, 0, sizeof rq_roles);
    strcpy(rq_roles[0].sop_class.value, CT_STORAGE);
    rq_roles[0].scu_role = 1;
    rq_roles[0].scp_role = 1;
    rq->user.roles = rq_roles;
    rq->user.role_count = 1;
}

static void queue_rq(fixture *f, const pdu_assoc *rq)
{
    assert_int_equal(pdu_encode_associate_rq(&f->tp.in, rq, NULL), CP_OK);
}

static void queue_pdata(fixture *f, uint8_t pc, bool command, const char *text, bool last)
{
    pdu_pdv v = { pc, command, last, (const uint8_t *)text, strlen(text) };

    assert_int_equal(pdu_encode_pdata(&f->tp.in, &v, 1, NULL), CP_OK);
}

static void queue_bytes(fixture *f, const uint8_t *b, size_t n)
{
    assert_int_equal(cp_buf_append(&f->tp.in, b, n), CP_OK);
}

/* The next PDU we sent; NULL when there is none. Free with pdu_destroy. */
static pdu *next_sent(fixture *f)
{
    pdu *p = NULL;
    size_t left = f->tp.out.len - f->out_pos;
    const uint8_t *b = f->tp.out.data + f->out_pos;
    size_t len;

    if (left < PDU_HEADER_LEN)
        return NULL;
    len = PDU_HEADER_LEN + ((size_t)b[2] << 24 | (size_t)b[3] << 16 | (size_t)b[4] << 8 | b[5]);
    assert_true(len <= left);
    assert_int_equal(pdu_decode(b, len, PDU_LENGTH_MAX, &p, NULL, NULL), CP_OK);
    f->out_pos += len;
    return p;
}

static void expect_sent_type(fixture *f, pdu_type type)
{
    pdu *p = next_sent(f);

    assert_non_null(p);
    assert_int_equal(p->type, type);
    pdu_destroy(p);
}

static void expect_abort(fixture *f, uint8_t source, uint8_t reason)
{
    pdu *p = next_sent(f);

    assert_non_null(p);
    assert_int_equal(p->type, PDU_ABORT);
    assert_int_equal(p->abort.source, source);
    if (source == PDU_ABORT_SOURCE_PROVIDER)
        assert_int_equal(p->abort.reason, reason);
    pdu_destroy(p);
}

static assoc_ind step(fixture *f)
{
    assoc_ind ind = ASSOC_IND_NONE;

    assert_int_equal(assoc_step(f->a, &ind), CP_OK);
    return ind;
}

/* Runs an acceptor up to Sta6 with the standard request. */
static void establish(fixture *f)
{
    pdu_assoc rq;
    bool accepted = false;

    make_rq(&rq, "CLOUDPACS", "MODALITY");
    queue_rq(f, &rq);
    assert_int_equal(assoc_start_acceptor(f->a, &f->policy), CP_OK);
    assert_int_equal(assoc_get_state(f->a), ASSOC_STA2);
    assert_int_equal(step(f), ASSOC_IND_ASSOCIATE_RQ);
    assert_int_equal(assoc_get_state(f->a), ASSOC_STA3);
    assert_int_equal(assoc_answer(f->a, &accepted), CP_OK);
    assert_true(accepted);
    assert_int_equal(assoc_get_state(f->a), ASSOC_STA6);
    expect_sent_type(f, PDU_ASSOCIATE_AC);
}

/* Sta13 ends when the peer closes (AR-5) or ARTIM expires (AA-2). */
static void expect_close(fixture *f, bool peer_closes)
{
    assert_int_equal(assoc_get_state(f->a), ASSOC_STA13);
    f->tp.eof = peer_closes;
    assert_int_equal(step(f), ASSOC_IND_CLOSED);
    assert_int_equal(assoc_get_state(f->a), ASSOC_STA1);
    assert_true(f->tp.shut);
}

/* --- tests -------------------------------------------------------------- */

static void test_associate_and_release(void **state)
{
    fixture *f = *state;
    pdu_assoc rq;
    bool accepted = false;
    pdu *ac;
    const pdu_pdata *pd;

    make_rq(&rq, "CLOUDPACS", "MODALITY");
    queue_rq(f, &rq);
    queue_pdata(f, 1, true, "echo", true);
    assert_int_equal(cp_buf_append(&f->tp.in, "\x05\0\0\0\0\x04\0\0\0\0", 10), CP_OK);
    f->tp.chunk = 7;        /* every PDU arrives in several reads */

    assert_int_equal(assoc_start_acceptor(f->a, &f->policy), CP_OK);
    assert_int_equal(step(f), ASSOC_IND_ASSOCIATE_RQ);
    assert_string_equal(assoc_calling_ae(f->a), "MODALITY");
    assert_int_equal(assoc_answer(f->a, &accepted), CP_OK);
    assert_true(accepted);

    ac = next_sent(f);
    assert_non_null(ac);
    assert_int_equal(ac->type, PDU_ASSOCIATE_AC);
    assert_int_equal(ac->assoc.pc_count, 4);
    assert_int_equal(ac->assoc.pcs[0].result, PDU_PC_ACCEPTANCE);
    assert_string_equal(ac->assoc.pcs[0].ts[0].value, IMPLICIT_LE);
    /* The SCU's first proposal that we accept: JPEG baseline, stored as received. */
    assert_int_equal(ac->assoc.pcs[1].result, PDU_PC_ACCEPTANCE);
    assert_string_equal(ac->assoc.pcs[1].ts[0].value, JPEG_BASELINE);
    assert_int_equal(ac->assoc.pcs[2].result, PDU_PC_ABSTRACT_SYNTAX_NOT_SUPPORTED);
    assert_int_equal(ac->assoc.pcs[3].result, PDU_PC_TRANSFER_SYNTAXES_NOT_SUPPORTED);
    assert_true(ac->assoc.user.has_max_length);
    assert_int_equal(ac->assoc.user.max_length, 16384);
    assert_true(ac->assoc.user.impl_class_uid.value[0] != '\0');
    assert_true(ac->assoc.user.has_async_window);
    assert_int_equal(ac->assoc.user.max_ops_invoked, 1);
    assert_int_equal(ac->assoc.user.max_ops_performed, 1);
    assert_int_equal(ac->assoc.user.role_count, 1);
    assert_int_equal(ac->assoc.user.roles[0].scu_role, 1);
    assert_int_equal(ac->assoc.user.roles[0].scp_role, 0);
    assert_false(ac->assoc.user.has_identity_ac);
    pdu_destroy(ac);
    assert_int_equal(assoc_context_count(f->a), 2);
    assert_non_null(assoc_find_context(f->a, 3));
    assert_null(assoc_find_context(f->a, 5));

    assert_int_equal(step(f), ASSOC_IND_PDATA);
    pd = assoc_pdvs(f->a);
    assert_non_null(pd);
    assert_int_equal(pd->count, 1);
    assert_memory_equal(pd->pdvs[0].data, "echo", 4);

    assert_int_equal(step(f), ASSOC_IND_RELEASE_RQ);
    assert_int_equal(assoc_get_state(f->a), ASSOC_STA8);
    assert_int_equal(assoc_release_response(f->a), CP_OK);
    expect_sent_type(f, PDU_RELEASE_RP);
    expect_close(f, true);
}

/* Each rejection: what AE-6 or assoc_answer sends, then Sta13 until ARTIM. */
static void reject_case(fixture *f, pdu_assoc *rq, uint8_t result, uint8_t source,
                        uint8_t reason)
{
    bool accepted = true;
    assoc_ind ind;
    pdu *rj;

    queue_rq(f, rq);
    assert_int_equal(assoc_start_acceptor(f->a, &f->policy), CP_OK);
    ind = step(f);
    if (ind == ASSOC_IND_ASSOCIATE_RQ) {
        assert_int_equal(assoc_answer(f->a, &accepted), CP_OK);
        assert_false(accepted);
    } else {
        assert_int_equal(ind, ASSOC_IND_REJECTED);
    }
    rj = next_sent(f);
    assert_non_null(rj);
    assert_int_equal(rj->type, PDU_ASSOCIATE_RJ);
    assert_int_equal(rj->reject.result, result);
    assert_int_equal(rj->reject.source, source);
    assert_int_equal(rj->reject.reason, reason);
    pdu_destroy(rj);
    assert_int_equal(assoc_rejection(f->a)->reason, reason);
    expect_close(f, false);
}

static void test_reject_called_ae(void **state)
{
    fixture *f = *state;
    pdu_assoc rq;

    make_rq(&rq, "SOMEONE", "MODALITY");
    reject_case(f, &rq, PDU_REJECT_PERMANENT, PDU_REJECT_SOURCE_USER,
                PDU_REJECT_USER_CALLED_AE);
}

static void test_reject_calling_ae(void **state)
{
    fixture *f = *state;
    pdu_assoc rq;

    f->allow_calling = false;
    make_rq(&rq, "CLOUDPACS", "STRANGER");
    reject_case(f, &rq, PDU_REJECT_PERMANENT, PDU_REJECT_SOURCE_USER,
                PDU_REJECT_USER_CALLING_AE);
}

static void test_reject_app_context(void **state)
{
    fixture *f = *state;
    pdu_assoc rq;

    make_rq(&rq, "CLOUDPACS", "MODALITY");
    strcpy(rq.app_context.value, "1.2.3.4");
    reject_case(f, &rq, PDU_REJECT_PERMANENT, PDU_REJECT_SOURCE_USER,
                PDU_REJECT_USER_CONTEXT_NAME);
}

static void test_reject_protocol_version(void **state)
{
    fixture *f = *state;
    pdu_assoc rq;

    make_rq(&rq, "CLOUDPACS", "MODALITY");
    rq.protocol_version = 0x0002;
    reject_case(f, &rq, PDU_REJECT_PERMANENT, PDU_REJECT_SOURCE_ACSE,
                PDU_REJECT_ACSE_PROTOCOL_VERSION);
}

static void test_reject_limit(void **state)
{
    fixture *f = *state;
    pdu_assoc rq;

    f->policy.over_limit = true;
    make_rq(&rq, "CLOUDPACS", "MODALITY");
    reject_case(f, &rq, PDU_REJECT_TRANSIENT, PDU_REJECT_SOURCE_PRESENTATION,
                PDU_REJECT_PRESENTATION_LIMIT);
}

static void identity_rq(pdu_assoc *rq, bool response)
{
    rq->user.has_identity_rq = true;
    rq->user.identity_rq.type = PDU_IDENTITY_USERNAME_PASSCODE;
    rq->user.identity_rq.response_requested = response;
    rq->user.identity_rq.primary = user_name;
    rq->user.identity_rq.primary_len = 5;
    rq->user.identity_rq.secondary = passcode;
    rq->user.identity_rq.secondary_len = 6;
}

static void test_reject_identity(void **state)
{
    fixture *f = *state;
    pdu_assoc rq;

    f->identity_answer = ASSOC_IDENTITY_REJECT;
    make_rq(&rq, "CLOUDPACS", "MODALITY");
    identity_rq(&rq, true);
    reject_case(f, &rq, PDU_REJECT_PERMANENT, PDU_REJECT_SOURCE_USER,
                PDU_REJECT_USER_NO_REASON);
}

static void test_identity_accepted_with_response(void **state)
{
    fixture *f = *state;
    pdu_assoc rq;
    bool accepted = false;
    pdu *ac;

    make_rq(&rq, "CLOUDPACS", "MODALITY");
    identity_rq(&rq, true);
    queue_rq(f, &rq);
    assert_int_equal(assoc_start_acceptor(f->a, &f->policy), CP_OK);
    assert_int_equal(step(f), ASSOC_IND_ASSOCIATE_RQ);
    assert_int_equal(assoc_answer(f->a, &accepted), CP_OK);
    assert_true(accepted);
    ac = next_sent(f);
    assert_non_null(ac);
    assert_true(ac->assoc.user.has_identity_ac);
    assert_int_equal(ac->assoc.user.identity_response_len, 5);
    assert_memory_equal(ac->assoc.user.identity_response, "token", 5);
    pdu_destroy(ac);
}

static void test_identity_without_hook(void **state)
{
    fixture *f = *state;
    pdu_assoc rq;
    bool accepted = false;
    pdu *ac;

    f->policy.identity = NULL;
    make_rq(&rq, "CLOUDPACS", "MODALITY");
    identity_rq(&rq, true);
    queue_rq(f, &rq);
    assert_int_equal(assoc_start_acceptor(f->a, &f->policy), CP_OK);
    assert_int_equal(step(f), ASSOC_IND_ASSOCIATE_RQ);
    assert_int_equal(assoc_answer(f->a, &accepted), CP_OK);
    assert_true(accepted);
    ac = next_sent(f);
    assert_non_null(ac);
    assert_true(ac->assoc.user.has_identity_ac);
    assert_int_equal(ac->assoc.user.identity_response_len, 0);
    pdu_destroy(ac);
}

static void test_peer_abort(void **state)
{
    fixture *f = *state;
    static const uint8_t abort_pdu[] = { 7, 0, 0, 0, 0, 4, 0, 0, 0, 0 };

    establish(f);
    queue_bytes(f, abort_pdu, sizeof abort_pdu);
    assert_int_equal(step(f), ASSOC_IND_ABORTED);
    assert_int_equal(assoc_get_state(f->a), ASSOC_STA1);
    assert_true(f->tp.shut);
}

static void test_local_abort(void **state)
{
    fixture *f = *state;

    establish(f);
    assert_int_equal(assoc_abort(f->a), CP_OK);
    expect_abort(f, PDU_ABORT_SOURCE_USER, 0);
    expect_close(f, true);
}

static void test_transport_closed(void **state)
{
    fixture *f = *state;

    establish(f);
    f->tp.eof = true;
    assert_int_equal(step(f), ASSOC_IND_ABORTED);     /* AA-4: A-P-ABORT */
    assert_int_equal(assoc_get_state(f->a), ASSOC_STA1);
    assert_false(assoc_artim_expired(f->a));
}

static void test_unexpected_rq_in_sta6(void **state)
{
    fixture *f = *state;
    pdu_assoc rq;

    establish(f);
    make_rq(&rq, "CLOUDPACS", "MODALITY");
    queue_rq(f, &rq);
    assert_int_equal(step(f), ASSOC_IND_ABORTED);     /* AA-8 */
    expect_abort(f, PDU_ABORT_SOURCE_PROVIDER, PDU_ABORT_UNEXPECTED_PDU);
    expect_close(f, false);
}

static void test_unexpected_release_rp(void **state)
{
    fixture *f = *state;

    establish(f);
    queue_bytes(f, (const uint8_t *)"\x06\0\0\0\0\x04\0\0\0\0", 10);
    assert_int_equal(step(f), ASSOC_IND_ABORTED);
    expect_abort(f, PDU_ABORT_SOURCE_PROVIDER, PDU_ABORT_UNEXPECTED_PDU);
}

static void test_unrecognized_pdu(void **state)
{
    fixture *f = *state;
    static const uint8_t junk[] = { 0x09, 0, 0, 0, 0, 2, 1, 2, 0x77, 0x77, 0x77 };

    establish(f);
    queue_bytes(f, junk, sizeof junk);
    assert_int_equal(step(f), ASSOC_IND_ABORTED);     /* Evt19, AA-8 */
    expect_abort(f, PDU_ABORT_SOURCE_PROVIDER, PDU_ABORT_UNRECOGNIZED_PDU);
    /* Garbage after the abort is thrown away until the peer closes. */
    expect_close(f, true);
}

static void test_pdata_before_rq(void **state)
{
    fixture *f = *state;

    queue_pdata(f, 1, true, "xx", true);
    assert_int_equal(assoc_start_acceptor(f->a, &f->policy), CP_OK);
    assert_int_equal(step(f), ASSOC_IND_ABORTED);     /* Sta2, Evt10: AA-1 */
    expect_sent_type(f, PDU_ABORT);
    expect_close(f, false);
}

static void test_garbage_before_rq(void **state)
{
    fixture *f = *state;

    queue_bytes(f, (const uint8_t *)"GET / HTTP/1.1\r\n\r\n", 18);
    assert_int_equal(assoc_start_acceptor(f->a, &f->policy), CP_OK);
    assert_int_equal(step(f), ASSOC_IND_ABORTED);     /* Sta2, Evt19: AA-1 */
    expect_sent_type(f, PDU_ABORT);
    expect_close(f, true);
}

static void test_artim_expiry(void **state)
{
    fixture *f = *state;

    assert_int_equal(assoc_start_acceptor(f->a, &f->policy), CP_OK);
    /* Nothing arrives: the read times out, ARTIM is running: Evt18, AA-2. */
    assert_int_equal(step(f), ASSOC_IND_CLOSED);
    assert_int_equal(assoc_get_state(f->a), ASSOC_STA1);
    assert_true(f->tp.shut);
    assert_int_equal(f->tp.out.len, 0);
    assert_true(assoc_artim_expired(f->a));
}

static void test_idle_timeout(void **state)
{
    fixture *f = *state;

    establish(f);
    assert_int_equal(step(f), ASSOC_IND_TIMEOUT);
    expect_abort(f, PDU_ABORT_SOURCE_USER, 0);
    expect_close(f, false);
}

static void test_oversized_pdu(void **state)
{
    fixture *f = *state;
    /* A P-DATA-TF declaring 16385 bytes, one more than we advertised. */
    static const uint8_t hdr[] = { 4, 0, 0, 0, 0x40, 0x01, 0, 0, 0, 0 };

    establish(f);
    queue_bytes(f, hdr, sizeof hdr);
    assert_int_equal(step(f), ASSOC_IND_ABORTED);
    expect_abort(f, PDU_ABORT_SOURCE_PROVIDER, PDU_ABORT_INVALID_PARAM);
    expect_close(f, true);
}

static void test_fragmentation_tiny_peer_max(void **state)
{
    fixture *f = *state;
    pdu_assoc rq;
    bool accepted;
    uint8_t msg[1001];
    cp_buf got = CP_BUF_INIT;
    size_t pdus = 0;
    pdu *p;

    make_rq(&rq, "CLOUDPACS", "MODALITY");
    rq.user.max_length = 64;              /* a peer that takes tiny PDUs */
    queue_rq(f, &rq);
    assert_int_equal(assoc_start_acceptor(f->a, &f->policy), CP_OK);
    assert_int_equal(step(f), ASSOC_IND_ASSOCIATE_RQ);
    assert_int_equal(assoc_answer(f->a, &accepted), CP_OK);
    expect_sent_type(f, PDU_ASSOCIATE_AC);

    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (uint8_t)i;
    assert_int_equal(assoc_send_pdata(f->a, 3, false, msg, sizeof msg, true), CP_OK);
    while ((p = next_sent(f)) != NULL) {
        assert_int_equal(p->type, PDU_P_DATA_TF);
        assert_int_equal(p->pdata.count, 1);
        assert_true(p->pdata.pdvs[0].len <= 64 - 6);
        assert_int_equal(p->pdata.pdvs[0].pc_id, 3);
        assert_false(p->pdata.pdvs[0].command);
        assert_int_equal(cp_buf_append(&got, p->pdata.pdvs[0].data, p->pdata.pdvs[0].len),
                         CP_OK);
        assert_int_equal(p->pdata.pdvs[0].last, got.len == sizeof msg);
        pdus++;
        pdu_destroy(p);
    }
    assert_true(pdus >= sizeof msg / 58);
    assert_int_equal(got.len, sizeof msg);
    assert_memory_equal(got.data, msg, sizeof msg);
    cp_buf_free(&got);
}

static void test_reassembly_tiny_own_max(void **state)
{
    fixture *f = *state;
    assoc_params small = { 64, 1000, 1000 };
    char piece[40];
    cp_buf got = CP_BUF_INIT;
    pdu_pdv two[2];

    assoc_destroy(f->a);
    f->a = assoc_create(&mem_transport, &f->tp, &small);
    establish(f);
    /* Twenty PDUs within 64 bytes each, in 5-byte reads. */
    f->tp.chunk = 5;
    for (int i = 0; i < 20; i++) {
        snprintf(piece, sizeof piece, "piece-%02d-abcdefghijklmnopqrstuv", i);
        queue_pdata(f, 3, false, piece, i == 19);
    }
    for (int i = 0; i < 20; i++) {
        const pdu_pdata *pd;

        assert_int_equal(step(f), ASSOC_IND_PDATA);
        pd = assoc_pdvs(f->a);
        assert_int_equal(pd->pdvs[0].last, i == 19);
        assert_int_equal(cp_buf_append(&got, pd->pdvs[0].data, pd->pdvs[0].len), CP_OK);
    }
    assert_int_equal(got.len, 20 * 31);
    assert_memory_equal(got.data + 31 * 7, "piece-07-", 9);

    /* Two PDVs in one PDU still fit; 65 bytes do not. */
    two[0] = (pdu_pdv){ 3, false, false, (const uint8_t *)"0123456789", 10 };
    two[1] = (pdu_pdv){ 3, false, true, (const uint8_t *)"abcdefghij", 10 };
    assert_int_equal(pdu_encode_pdata(&f->tp.in, two, 2, NULL), CP_OK);
    assert_int_equal(step(f), ASSOC_IND_PDATA);
    assert_int_equal(assoc_pdvs(f->a)->count, 2);
    queue_pdata(f, 3, false, "01234567890123456789012345678901234567890123456789012345678",
                true);
    assert_int_equal(step(f), ASSOC_IND_ABORTED);
    expect_abort(f, PDU_ABORT_SOURCE_PROVIDER, PDU_ABORT_INVALID_PARAM);
    cp_buf_free(&got);
}

/* A requestor talking to the memory transport: its -AC is queued first. */
static void request(fixture *f)
{
    pdu_assoc rq, ac;
    pdu_pres_ctx pc;
    pdu_uid ts;
    assoc_ind ind;

    make_rq(&rq, "REMOTE", "CLOUDPACS");
    memset(&ac, 0, sizeof ac);
    ac.protocol_version = PDU_PROTOCOL_VERSION;
    strcpy(ac.app_context.value, PDU_APPLICATION_CONTEXT);
    memset(&pc, 0, sizeof pc);
    pc.id = 3;
    pc.result = PDU_PC_ACCEPTANCE;
    strcpy(ts.value, IMPLICIT_LE);
    pc.ts = &ts;
    pc.ts_count = 1;
    ac.pcs = &pc;
    ac.pc_count = 1;
    ac.has_user_info = true;
    ac.user.has_max_length = true;
    ac.user.max_length = 100;
    strcpy(ac.user.impl_class_uid.value, "1.2.3");
    assert_int_equal(pdu_encode_associate_ac(&f->tp.in, &ac, NULL), CP_OK);

    assert_int_equal(assoc_request(f->a, &rq, &ind), CP_OK);
    assert_int_equal(ind, ASSOC_IND_ACCEPTED);
    assert_int_equal(assoc_get_state(f->a), ASSOC_STA6);
    expect_sent_type(f, PDU_ASSOCIATE_RQ);
    assert_int_equal(assoc_context_count(f->a), 1);
    assert_string_equal(assoc_context_at(f->a, 0)->abstract_syntax, CT_STORAGE);
    assert_int_equal(assoc_peer_max_pdu(f->a), 100);
}

static void test_requestor_release(void **state)
{
    fixture *f = *state;

    request(f);
    queue_bytes(f, (const uint8_t *)"\x06\0\0\0\0\x04\0\0\0\0", 10);
    assert_int_equal(assoc_release(f->a), CP_OK);
    expect_sent_type(f, PDU_RELEASE_RQ);
    assert_int_equal(assoc_get_state(f->a), ASSOC_STA1);
}

static void test_requestor_rejected(void **state)
{
    fixture *f = *state;
    pdu_assoc rq;
    pdu_reject rj = { PDU_REJECT_PERMANENT, PDU_REJECT_SOURCE_USER, 7 };
    assoc_ind ind;

    make_rq(&rq, "REMOTE", "CLOUDPACS");
    assert_int_equal(pdu_encode_associate_rj(&f->tp.in, &rj, NULL), CP_OK);
    assert_int_equal(assoc_request(f->a, &rq, &ind), CP_OK);
    assert_int_equal(ind, ASSOC_IND_REJECTED);
    assert_int_equal(assoc_rejection(f->a)->reason, 7);
    assert_int_equal(assoc_get_state(f->a), ASSOC_STA1);
}

static void test_collision_requestor(void **state)
{
    fixture *f = *state;

    request(f);
    assert_int_equal(assoc_release_request(f->a), CP_OK);
    assert_int_equal(assoc_get_state(f->a), ASSOC_STA7);
    expect_sent_type(f, PDU_RELEASE_RQ);
    /* Data still arriving while we release is indicated (AR-6). */
    queue_pdata(f, 3, false, "late", true);
    assert_int_equal(step(f), ASSOC_IND_PDATA);
    assert_int_equal(assoc_get_state(f->a), ASSOC_STA7);
    queue_bytes(f, (const uint8_t *)"\x05\0\0\0\0\x04\0\0\0\0", 10);
    assert_int_equal(step(f), ASSOC_IND_COLLISION);
    assert_int_equal(assoc_get_state(f->a), ASSOC_STA9);
    assert_int_equal(assoc_release_response(f->a), CP_OK);    /* AR-9 */
    assert_int_equal(assoc_get_state(f->a), ASSOC_STA11);
    expect_sent_type(f, PDU_RELEASE_RP);
    queue_bytes(f, (const uint8_t *)"\x06\0\0\0\0\x04\0\0\0\0", 10);
    assert_int_equal(step(f), ASSOC_IND_RELEASED);            /* AR-3 */
    assert_int_equal(assoc_get_state(f->a), ASSOC_STA1);
}

static void test_collision_acceptor(void **state)
{
    fixture *f = *state;

    establish(f);
    assert_int_equal(assoc_release_request(f->a), CP_OK);
    expect_sent_type(f, PDU_RELEASE_RQ);
    queue_bytes(f, (const uint8_t *)"\x05\0\0\0\0\x04\0\0\0\0", 10);
    assert_int_equal(step(f), ASSOC_IND_COLLISION);
    assert_int_equal(assoc_get_state(f->a), ASSOC_STA10);
    queue_bytes(f, (const uint8_t *)"\x06\0\0\0\0\x04\0\0\0\0", 10);
    assert_int_equal(step(f), ASSOC_IND_RELEASED);            /* AR-10 */
    assert_int_equal(assoc_get_state(f->a), ASSOC_STA12);
    assert_int_equal(assoc_release_response(f->a), CP_OK);    /* AR-4 */
    expect_sent_type(f, PDU_RELEASE_RP);
    expect_close(f, true);
}

static void test_impossible_primitive(void **state)
{
    fixture *f = *state;

    assert_int_equal(assoc_start_acceptor(f->a, &f->policy), CP_OK);
    /* P-DATA request in Sta2 is an empty cell: a bug, answered by an abort. */
    assert_int_equal(assoc_send_pdata(f->a, 1, true, "x", 1, true), CP_ERR_INVALID);
    assert_int_equal(assoc_get_state(f->a), ASSOC_STA13);
    expect_sent_type(f, PDU_ABORT);
    assert_int_equal(assoc_dispatch(f->a, ASSOC_EVT1, NULL), CP_ERR_INVALID);
}

static void test_dispatch_table_rows(void **state)
{
    fixture *f = *state;
    assoc_ind ind;

    /* Evt17 in Sta2 (AA-5) and Evt16 in Sta13 (AA-2) through the table directly. */
    assert_int_equal(assoc_start_acceptor(f->a, &f->policy), CP_OK);
    assert_int_equal(assoc_dispatch(f->a, ASSOC_EVT17, &ind), CP_OK);
    assert_int_equal(ind, ASSOC_IND_CLOSED);
    assert_int_equal(assoc_get_state(f->a), ASSOC_STA1);
}

/*
 * Mutated requests followed by mutated P-DATA: whatever arrives, the machine
 * ends in Sta1 within a bounded number of steps, and everything it sent
 * decodes (ASan checks the memory side).
 */
static void test_mutated_input(void **state)
{
    fixture *f = *state;
    cp_buf good = CP_BUF_INIT;
    pdu_assoc rq;
    uint32_t seed = 12345;

    make_rq(&rq, "CLOUDPACS", "MODALITY");
    assert_int_equal(pdu_encode_associate_rq(&good, &rq, NULL), CP_OK);
    {
        pdu_pdv v = { 3, true, true, (const uint8_t *)"0123456789", 10 };

        assert_int_equal(pdu_encode_pdata(&good, &v, 1, NULL), CP_OK);
    }

    for (int iter = 0; iter < 3000; iter++) {
        assoc *a = assoc_create(&mem_transport, &f->tp, &f->params);
        int steps = 0;
        pdu *p;

        cp_buf_reset(&f->tp.in);
        cp_buf_reset(&f->tp.out);
        f->tp.pos = 0;
        f->tp.shut = false;
        f->tp.eof = (iter & 1) != 0;
        f->tp.chunk = (size_t)(iter % 7);
        f->out_pos = 0;
        assert_int_equal(cp_buf_append(&f->tp.in, good.data, good.len), CP_OK);
        for (int m = 0; m < 1 + iter % 4; m++) {
            seed = seed * 1103515245u + 12345u;
            f->tp.in.data[(seed >> 8) % good.len] = (uint8_t)(seed >> 20);
        }
        if (iter % 5 == 0)
            f->tp.in.len = (seed >> 4) % good.len;

        assert_int_equal(assoc_start_acceptor(a, &f->policy), CP_OK);
        while (assoc_get_state(a) != ASSOC_STA1 && steps++ < 50) {
            assoc_ind ind = ASSOC_IND_NONE;
            bool accepted;

            assert_int_equal(assoc_step(a, &ind), CP_OK);
            if (ind == ASSOC_IND_ASSOCIATE_RQ)
                assoc_answer(a, &accepted);
            else if (ind == ASSOC_IND_RELEASE_RQ)
                assoc_release_response(a);
            else if (ind == ASSOC_IND_PDATA)
                assoc_abort(a);
            f->tp.eof = true;
        }
        assert_int_equal(assoc_get_state(a), ASSOC_STA1);
        while ((p = next_sent(f)) != NULL)
            pdu_destroy(p);
        assert_int_equal(f->out_pos, f->tp.out.len);
        assoc_destroy(a);
    }
    cp_buf_free(&good);
}

static void test_abstract_supported(void **state)
{
    (void)state;
    assert_true(assoc_abstract_supported(VERIFICATION, ASSOC_SERVICE_VERIFICATION));
    assert_false(assoc_abstract_supported(VERIFICATION, ASSOC_SERVICE_STORAGE));
    assert_true(assoc_abstract_supported(CT_STORAGE, ASSOC_SERVICE_STORAGE));
    assert_false(assoc_abstract_supported("1.2.840.10008.5.1.4.1.2.2.1",
                                          ASSOC_SERVICE_STORAGE));
    assert_true(assoc_abstract_supported("1.2.840.10008.5.1.4.1.2.2.1", ASSOC_SERVICE_QUERY));
    assert_true(assoc_abstract_supported("1.2.840.10008.5.1.4.1.2.2.2",
                                         ASSOC_SERVICE_RETRIEVE));
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_associate_and_release),
        T(test_reject_called_ae),
        T(test_reject_calling_ae),
        T(test_reject_app_context),
        T(test_reject_protocol_version),
        T(test_reject_limit),
        T(test_reject_identity),
        T(test_identity_accepted_with_response),
        T(test_identity_without_hook),
        T(test_peer_abort),
        T(test_local_abort),
        T(test_transport_closed),
        T(test_unexpected_rq_in_sta6),
        T(test_unexpected_release_rp),
        T(test_unrecognized_pdu),
        T(test_pdata_before_rq),
        T(test_garbage_before_rq),
        T(test_artim_expiry),
        T(test_idle_timeout),
        T(test_oversized_pdu),
        T(test_fragmentation_tiny_peer_max),
        T(test_reassembly_tiny_own_max),
        T(test_requestor_release),
        T(test_requestor_rejected),
        T(test_collision_requestor),
        T(test_collision_acceptor),
        T(test_impossible_primitive),
        T(test_dispatch_table_rows),
        T(test_mutated_input),
        T(test_abstract_supported),
    };
#undef T

    return cmocka_run_group_tests(tests, NULL, NULL);
}

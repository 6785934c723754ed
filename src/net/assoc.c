/*
 * assoc.c - the DICOM upper layer state machine (PS3.8 section 9.2, Table
 * 9-10) and association negotiation (PS3.8 9.3.2-9.3.4, PS3.7 Annex D).
 *
 * assoc_table holds, for each event and state, the action of PS3.8 9.2.2;
 * each action is a function returning the next state. Empty cells are
 * local primitives the service never issues in that state: a bug in the
 * caller, answered with an abort and CP_ERR_INVALID.
 *
 * PDUs are read in two steps: the 6-byte header, checked by
 * pdu_read_header against the limit of the state (PDU_ASSOCIATE_MAX while
 * an association PDU is due, our advertised Maximum Length after), and
 * only then the body, into one receive buffer reused for every PDU.
 */
#include "net/assoc.h"

#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/limits.h"
#include "dicom/ts.h"
#include "dicom/uid.h"
#include "dicom/writer.h"

#define ASSOC_VERIFICATION_UID "1.2.840.10008.1.1"

/* Query/Retrieve information models (PS3.4 C.6), FIND, MOVE and GET. */
static const char *const assoc_query_uids[] = {
    "1.2.840.10008.5.1.4.1.2.1.1",      /* Patient Root FIND */
    "1.2.840.10008.5.1.4.1.2.2.1",      /* Study Root FIND */
    "1.2.840.10008.5.1.4.1.2.3.1",      /* Patient/Study Only FIND (retired) */
};

static const char *const assoc_retrieve_uids[] = {
    "1.2.840.10008.5.1.4.1.2.1.2",      /* Patient Root MOVE */
    "1.2.840.10008.5.1.4.1.2.1.3",      /* Patient Root GET */
    "1.2.840.10008.5.1.4.1.2.2.2",      /* Study Root MOVE */
    "1.2.840.10008.5.1.4.1.2.2.3",      /* Study Root GET */
    "1.2.840.10008.5.1.4.1.2.3.2",      /* Patient/Study Only MOVE (retired) */
    "1.2.840.10008.5.1.4.1.2.3.3",      /* Patient/Study Only GET (retired) */
};

/* Actions of PS3.8 9.2.2; ACT_BUG marks the cells that cannot happen. */
typedef enum assoc_action {
    ACT_BUG,
    AE_1, AE_2, AE_3, AE_4, AE_5, AE_6, AE_7, AE_8,
    DT_1, DT_2,
    AR_1, AR_2, AR_3, AR_4, AR_5, AR_6, AR_7, AR_8, AR_9, AR_10,
    AA_1, AA_2, AA_3, AA_4, AA_5, AA_6, AA_7, AA_8,
    ACT_COUNT
} assoc_action;

/* XX marks the cells of local primitives the service never issues there. */
#define XX ACT_BUG

/* PS3.8 Table 9-10: rows are events 1-19, columns states 1-13. */
static const uint8_t assoc_table[19][13] = {
    /*         1     2     3     4     5     6     7     8     9    10    11    12    13 */
    /* 1 */ { AE_1, XX,   XX,   XX,   XX,   XX,   XX,   XX,   XX,   XX,   XX,   XX,   XX },
    /* 2 */ { XX,   XX,   XX,   AE_2, XX,   XX,   XX,   XX,   XX,   XX,   XX,   XX,   XX },
    /* 3 */ { XX,   AA_1, AA_8, XX,   AE_3, AA_8, AA_8, AA_8, AA_8, AA_8, AA_8, AA_8, AA_6 },
    /* 4 */ { XX,   AA_1, AA_8, XX,   AE_4, AA_8, AA_8, AA_8, AA_8, AA_8, AA_8, AA_8, AA_6 },
    /* 5 */ { AE_5, XX,   XX,   XX,   XX,   XX,   XX,   XX,   XX,   XX,   XX,   XX,   XX },
    /* 6 */ { XX,   AE_6, AA_8, XX,   AA_8, AA_8, AA_8, AA_8, AA_8, AA_8, AA_8, AA_8, AA_7 },
    /* 7 */ { XX,   XX,   AE_7, XX,   XX,   XX,   XX,   XX,   XX,   XX,   XX,   XX,   XX },
    /* 8 */ { XX,   XX,   AE_8, XX,   XX,   XX,   XX,   XX,   XX,   XX,   XX,   XX,   XX },
    /* 9 */ { XX,   XX,   XX,   XX,   XX,   DT_1, XX,   AR_7, XX,   XX,   XX,   XX,   XX },
    /* 10 */ { XX,  AA_1, AA_8, XX,   AA_8, DT_2, AR_6, AA_8, AA_8, AA_8, AA_8, AA_8, AA_6 },
    /* 11 */ { XX,  XX,   XX,   XX,   XX,   AR_1, XX,   XX,   XX,   XX,   XX,   XX,   XX },
    /* 12 */ { XX,  AA_1, AA_8, XX,   AA_8, AR_2, AR_8, AA_8, AA_8, AA_8, AA_8, AA_8, AA_6 },
    /* 13 */ { XX,  AA_1, AA_8, XX,   AA_8, AA_8, AR_3, AA_8, AA_8, AR_10, AR_3, AA_8, AA_6 },
    /* 14 */ { XX,  XX,   XX,   XX,   XX,   XX,   XX,   AR_4, AR_9, XX,   XX,   AR_4, XX },
    /* 15 */ { XX,  XX,   AA_1, AA_2, AA_1, AA_1, AA_1, AA_1, AA_1, AA_1, AA_1, AA_1, XX },
    /* 16 */ { XX,  AA_2, AA_3, XX,   AA_3, AA_3, AA_3, AA_3, AA_3, AA_3, AA_3, AA_3, AA_2 },
    /* 17 */ { XX,  AA_5, AA_4, AA_4, AA_4, AA_4, AA_4, AA_4, AA_4, AA_4, AA_4, AA_4, AR_5 },
    /* 18 */ { XX,  AA_2, XX,   XX,   XX,   XX,   XX,   XX,   XX,   XX,   XX,   XX,   AA_2 },
    /* 19 */ { XX,  AA_1, AA_8, XX,   AA_8, AA_8, AA_8, AA_8, AA_8, AA_8, AA_8, AA_8, AA_7 },
};

#undef XX

/* Arguments of local primitives, set by the primitive before dispatching. */
typedef struct assoc_local {
    const pdu_assoc *assoc;             /* Evt1: the -RQ; Evt7: the -AC */
    pdu_reject reject;                  /* Evt8 */
    uint8_t pc_id;                      /* Evt9 */
    bool command;
    const uint8_t *data;
    size_t len;
    bool last;
    pdu_abort abort;                    /* Evt15 */
} assoc_local;

struct assoc {
    const assoc_transport *tp;
    void *tp_ctx;
    assoc_params params;
    const assoc_policy *policy;
    assoc_state state;
    bool requestor;
    bool closed;
    bool broken;                        /* a write failed: the transport is unusable */
    bool drain;                         /* Sta13 after garbage: discard until closed */
    bool idle_expired;
    bool artim_expired;
    int64_t artim_deadline;             /* monotonic ms; 0 when stopped */
    pdu_abort_reason reason;            /* AA-8's reason for the current event */
    assoc_ind ind;
    assoc_local local;
    cp_buf rbuf;
    cp_buf sbuf;
    pdu *cur;                           /* the PDU of the current event */
    pdu *rq;                            /* the -RQ received (acceptor) */
    pdu_reject rejection;
    uint32_t peer_max;
    assoc_context *ctx;
    size_t ctx_count;
    char (*proposed)[PDU_UID_SIZE];     /* requestor: abstract syntax by (id - 1) / 2 */
    char calling[PDU_AE_SIZE];
    char called[PDU_AE_SIZE];
    char detail[CP_ERROR_DETAIL_MAX];
};

typedef assoc_state (*assoc_action_fn)(assoc *a);

/* --- helpers ------------------------------------------------------------ */

static int64_t assoc_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void assoc_set_detail(assoc *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void assoc_set_detail(assoc *a, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(a->detail, sizeof a->detail, fmt, ap);
    va_end(ap);
}

static void artim_start(assoc *a)
{
    a->artim_deadline = assoc_now_ms() + a->params.artim_ms;
}

static void artim_stop(assoc *a)
{
    a->artim_deadline = 0;
}

static void transport_close(assoc *a)
{
    if (a->closed)
        return;
    a->closed = true;
    a->tp->shutdown(a->tp_ctx);
}

/* Writes what sbuf holds; a failure leaves the association broken. */
static void send_sbuf(assoc *a)
{
    cp_status st;

    if (a->closed || a->broken) {
        cp_buf_reset(&a->sbuf);
        return;
    }
    st = a->tp->write(a->tp_ctx, a->sbuf.data, a->sbuf.len, a->params.idle_ms);
    cp_buf_reset(&a->sbuf);
    if (st != CP_OK) {
        a->broken = true;
        assoc_set_detail(a, "write to the peer failed (%s)", cp_status_name(st));
    }
}

static void send_abort(assoc *a, uint8_t source, uint8_t reason)
{
    pdu_abort ab = { source, source == PDU_ABORT_SOURCE_PROVIDER ? reason : 0 };

    if (pdu_encode_abort(&a->sbuf, &ab, NULL) == CP_OK)
        send_sbuf(a);
}

/* --- actions (PS3.8 9.2.2) ---------------------------------------------- */

static assoc_state act_bug(assoc *a)
{
    return a->state;
}

static assoc_state ae_1(assoc *a)
{
    /* The caller connected the transport before the request (scu.c). */
    a->requestor = true;
    return ASSOC_STA4;
}

static assoc_state ae_2(assoc *a)
{
    cp_error err;

    cp_error_clear(&err);
    if (pdu_encode_associate_rq(&a->sbuf, a->local.assoc, &err) != CP_OK) {
        assoc_set_detail(a, "cannot encode A-ASSOCIATE-RQ: %s", err.detail);
        a->broken = true;
        return ASSOC_STA5;
    }
    send_sbuf(a);
    return ASSOC_STA5;
}

static void ac_roles(assoc *a, const pdu_user_info *ui)
{
    for (size_t i = 0; i < a->ctx_count; i++) {
        assoc_context *c = &a->ctx[i];

        for (size_t r = 0; r < ui->role_count; r++) {
            if (strcmp(ui->roles[r].sop_class.value, c->abstract_syntax) != 0)
                continue;
            c->scu_role = ui->roles[r].scu_role != 0;
            c->scp_role = ui->roles[r].scp_role != 0;
        }
    }
}

static assoc_state ae_3(assoc *a)
{
    const pdu_assoc *ac = &a->cur->assoc;
    size_t n = 0;

    a->peer_max = ac->has_user_info && ac->user.has_max_length ? ac->user.max_length : 0;
    a->ctx = cp_calloc(ac->pc_count == 0 ? 1 : ac->pc_count, sizeof *a->ctx);
    if (a->ctx == NULL) {
        a->broken = true;
        assoc_set_detail(a, "out of memory");
        return ASSOC_STA6;
    }
    for (size_t i = 0; i < ac->pc_count; i++) {
        const pdu_pres_ctx *pc = &ac->pcs[i];
        assoc_context *c = &a->ctx[n];

        if (pc->result != PDU_PC_ACCEPTANCE || pc->ts_count == 0)
            continue;
        if (a->proposed == NULL || a->proposed[(pc->id - 1) / 2][0] == '\0')
            continue;
        c->id = pc->id;
        memcpy(c->abstract_syntax, a->proposed[(pc->id - 1) / 2], PDU_UID_SIZE);
        memcpy(c->transfer_syntax, pc->ts[0].value, PDU_UID_SIZE);
        c->scu_role = true;
        n++;
    }
    a->ctx_count = n;
    if (ac->has_user_info)
        ac_roles(a, &ac->user);
    a->ind = ASSOC_IND_ACCEPTED;
    return ASSOC_STA6;
}

static assoc_state ae_4(assoc *a)
{
    a->rejection = a->cur->reject;
    a->ind = ASSOC_IND_REJECTED;
    transport_close(a);
    return ASSOC_STA1;
}

static assoc_state ae_5(assoc *a)
{
    artim_start(a);
    return ASSOC_STA2;
}

static assoc_state reject_now(assoc *a, uint8_t result, uint8_t source, uint8_t reason)
{
    pdu_reject rj = { result, source, reason };

    a->rejection = rj;
    if (pdu_encode_associate_rj(&a->sbuf, &rj, NULL) == CP_OK)
        send_sbuf(a);
    artim_start(a);
    a->ind = ASSOC_IND_REJECTED;
    return ASSOC_STA13;
}

static assoc_state ae_6(assoc *a)
{
    const pdu_assoc *rq = &a->cur->assoc;

    artim_stop(a);
    a->rq = a->cur;
    a->cur = NULL;
    memcpy(a->calling, rq->calling_ae, PDU_AE_SIZE);
    memcpy(a->called, rq->called_ae, PDU_AE_SIZE);
    a->peer_max = rq->has_user_info && rq->user.has_max_length ? rq->user.max_length : 0;

    if ((rq->protocol_version & PDU_PROTOCOL_VERSION) == 0) {
        assoc_set_detail(a, "protocol version 0x%04x not supported", rq->protocol_version);
        return reject_now(a, PDU_REJECT_PERMANENT, PDU_REJECT_SOURCE_ACSE,
                          PDU_REJECT_ACSE_PROTOCOL_VERSION);
    }
    if (a->policy != NULL && a->policy->over_limit) {
        assoc_set_detail(a, "too many associations at once");
        return reject_now(a, PDU_REJECT_TRANSIENT, PDU_REJECT_SOURCE_PRESENTATION,
                          PDU_REJECT_PRESENTATION_LIMIT);
    }
    a->ind = ASSOC_IND_ASSOCIATE_RQ;
    return ASSOC_STA3;
}

static assoc_state ae_7(assoc *a)
{
    cp_error err;

    cp_error_clear(&err);
    if (pdu_encode_associate_ac(&a->sbuf, a->local.assoc, &err) != CP_OK) {
        assoc_set_detail(a, "cannot encode A-ASSOCIATE-AC: %s", err.detail);
        a->broken = true;
        return ASSOC_STA6;
    }
    send_sbuf(a);
    return ASSOC_STA6;
}

static assoc_state ae_8(assoc *a)
{
    return reject_now(a, a->local.reject.result, a->local.reject.source,
                      a->local.reject.reason);
}

/* Sends the local P-DATA arguments in PDUs that fit the peer's maximum. */
static void send_local_pdata(assoc *a)
{
    size_t piece = pdu_pdv_payload_max(a->peer_max);
    size_t off = 0;

    if (piece == 0) {
        assoc_set_detail(a, "peer maximum length %u too small", (unsigned)a->peer_max);
        a->broken = true;
        return;
    }
    do {
        size_t n = a->local.len - off < piece ? a->local.len - off : piece;
        bool last = a->local.last && off + n == a->local.len;

        if (pdu_encode_pdata_fragments(&a->sbuf, a->local.pc_id, a->local.command,
                                       a->local.data + off, n, a->peer_max, last,
                                       NULL) != CP_OK) {
            a->broken = true;
            assoc_set_detail(a, "cannot encode P-DATA-TF");
            return;
        }
        send_sbuf(a);
        off += n;
    } while (off < a->local.len && !a->broken);
}

static assoc_state dt_1(assoc *a)
{
    send_local_pdata(a);
    return ASSOC_STA6;
}

static assoc_state dt_2(assoc *a)
{
    a->ind = ASSOC_IND_PDATA;
    return ASSOC_STA6;
}

static assoc_state ar_1(assoc *a)
{
    if (pdu_encode_release_rq(&a->sbuf) == CP_OK)
        send_sbuf(a);
    return ASSOC_STA7;
}

static assoc_state ar_2(assoc *a)
{
    a->ind = ASSOC_IND_RELEASE_RQ;
    return ASSOC_STA8;
}

static assoc_state ar_3(assoc *a)
{
    a->ind = ASSOC_IND_RELEASED;
    transport_close(a);
    return ASSOC_STA1;
}

static assoc_state ar_4(assoc *a)
{
    if (pdu_encode_release_rp(&a->sbuf) == CP_OK)
        send_sbuf(a);
    artim_start(a);
    return ASSOC_STA13;
}

static assoc_state ar_5(assoc *a)
{
    artim_stop(a);
    a->ind = ASSOC_IND_CLOSED;
    transport_close(a);
    return ASSOC_STA1;
}

static assoc_state ar_6(assoc *a)
{
    a->ind = ASSOC_IND_PDATA;
    return ASSOC_STA7;
}

static assoc_state ar_7(assoc *a)
{
    send_local_pdata(a);
    return ASSOC_STA8;
}

static assoc_state ar_8(assoc *a)
{
    a->ind = ASSOC_IND_COLLISION;
    return a->requestor ? ASSOC_STA9 : ASSOC_STA10;
}

static assoc_state ar_9(assoc *a)
{
    if (pdu_encode_release_rp(&a->sbuf) == CP_OK)
        send_sbuf(a);
    return ASSOC_STA11;
}

static assoc_state ar_10(assoc *a)
{
    a->ind = ASSOC_IND_RELEASED;
    return ASSOC_STA12;
}

static assoc_state aa_1(assoc *a)
{
    send_abort(a, a->local.abort.source, a->local.abort.reason);
    artim_start(a);
    if (a->ind == ASSOC_IND_NONE)
        a->ind = ASSOC_IND_ABORTED;
    return ASSOC_STA13;
}

static assoc_state aa_2(assoc *a)
{
    artim_stop(a);
    transport_close(a);
    a->ind = ASSOC_IND_CLOSED;
    return ASSOC_STA1;
}

static assoc_state aa_3(assoc *a)
{
    if (a->cur != NULL && a->cur->type == PDU_ABORT)
        assoc_set_detail(a, "A-ABORT from the peer (source %u, reason %u)",
                         a->cur->abort.source, a->cur->abort.reason);
    a->ind = ASSOC_IND_ABORTED;
    transport_close(a);
    return ASSOC_STA1;
}

static assoc_state aa_4(assoc *a)
{
    assoc_set_detail(a, "the peer closed the connection");
    a->ind = ASSOC_IND_ABORTED;
    transport_close(a);
    return ASSOC_STA1;
}

static assoc_state aa_5(assoc *a)
{
    assoc_set_detail(a, "the peer closed the connection before A-ASSOCIATE-RQ");
    artim_stop(a);
    transport_close(a);
    a->ind = ASSOC_IND_CLOSED;
    return ASSOC_STA1;
}

static assoc_state aa_6(assoc *a)
{
    a->ind = ASSOC_IND_NONE;
    return ASSOC_STA13;
}

static assoc_state aa_7(assoc *a)
{
    send_abort(a, PDU_ABORT_SOURCE_PROVIDER, a->reason);
    a->ind = ASSOC_IND_NONE;
    return ASSOC_STA13;
}

static assoc_state aa_8(assoc *a)
{
    send_abort(a, PDU_ABORT_SOURCE_PROVIDER, a->reason);
    a->ind = ASSOC_IND_ABORTED;
    artim_start(a);
    return ASSOC_STA13;
}

static const assoc_action_fn assoc_actions[ACT_COUNT] = {
    [ACT_BUG] = act_bug,
    [AE_1] = ae_1, [AE_2] = ae_2, [AE_3] = ae_3, [AE_4] = ae_4,
    [AE_5] = ae_5, [AE_6] = ae_6, [AE_7] = ae_7, [AE_8] = ae_8,
    [DT_1] = dt_1, [DT_2] = dt_2,
    [AR_1] = ar_1, [AR_2] = ar_2, [AR_3] = ar_3, [AR_4] = ar_4, [AR_5] = ar_5,
    [AR_6] = ar_6, [AR_7] = ar_7, [AR_8] = ar_8, [AR_9] = ar_9, [AR_10] = ar_10,
    [AA_1] = aa_1, [AA_2] = aa_2, [AA_3] = aa_3, [AA_4] = aa_4,
    [AA_5] = aa_5, [AA_6] = aa_6, [AA_7] = aa_7, [AA_8] = aa_8,
};

/* --- the machine -------------------------------------------------------- */

cp_status assoc_dispatch(assoc *a, assoc_event ev, assoc_ind *ind)
{
    assoc_action act;

    a->ind = ASSOC_IND_NONE;
    if (ind != NULL)
        *ind = ASSOC_IND_NONE;
    act = (assoc_action)assoc_table[ev - 1][a->state - 1];
    if (act == ACT_BUG) {
        assoc_set_detail(a, "event %d cannot happen in state %d", (int)ev, (int)a->state);
        if (a->state != ASSOC_STA1 && a->state != ASSOC_STA13 && !a->closed) {
            a->local.abort.source = PDU_ABORT_SOURCE_USER;
            a->local.abort.reason = 0;
            a->state = aa_1(a);
        }
        if (ind != NULL)
            *ind = a->ind;
        return CP_ERR_INVALID;
    }

    a->state = assoc_actions[act](a);

    if (a->broken && !a->closed) {
        transport_close(a);
        artim_stop(a);
        a->state = ASSOC_STA1;
        a->ind = ASSOC_IND_ABORTED;
    }
    if (ind != NULL)
        *ind = a->ind;
    return a->broken ? CP_ERR_IO : CP_OK;
}

assoc *assoc_create(const assoc_transport *tp, void *tp_ctx, const assoc_params *params)
{
    assoc *a = cp_calloc(1, sizeof *a);

    if (a == NULL)
        return NULL;
    a->tp = tp;
    a->tp_ctx = tp_ctx;
    if (params != NULL)
        a->params = *params;
    if (a->params.max_pdu == 0)
        a->params.max_pdu = PDU_RECEIVE_MAX_DEFAULT;
    if (a->params.max_pdu > PDU_LENGTH_MAX)
        a->params.max_pdu = PDU_LENGTH_MAX;
    if (a->params.artim_ms <= 0)
        a->params.artim_ms = ASSOC_ARTIM_DEFAULT_S * 1000;
    if (a->params.idle_ms <= 0)
        a->params.idle_ms = ASSOC_IDLE_DEFAULT_S * 1000;
    a->state = ASSOC_STA1;
    cp_buf_init(&a->rbuf);
    cp_buf_init(&a->sbuf);
    return a;
}

void assoc_destroy(assoc *a)
{
    if (a == NULL)
        return;
    pdu_destroy(a->cur);
    pdu_destroy(a->rq);
    cp_buf_free(&a->rbuf);
    cp_buf_free(&a->sbuf);
    cp_free(a->ctx);
    cp_free(a->proposed);
    cp_free(a);
}

assoc_state assoc_get_state(const assoc *a)
{
    return a->state;
}

bool assoc_is_closed(const assoc *a)
{
    return a->state == ASSOC_STA1;
}

bool assoc_artim_expired(const assoc *a)
{
    return a->artim_expired;
}

const char *assoc_detail(const assoc *a)
{
    return a->detail;
}

cp_status assoc_start_acceptor(assoc *a, const assoc_policy *policy)
{
    a->policy = policy;
    a->requestor = false;
    return assoc_dispatch(a, ASSOC_EVT5, NULL);
}

/* --- reading events ----------------------------------------------------- */

typedef enum read_result {
    READ_OK,
    READ_CLOSED,
    READ_TIMEOUT
} read_result;

/* Reads exactly len bytes before deadline (monotonic ms). */
static read_result read_full(assoc *a, uint8_t *buf, size_t len, int64_t deadline)
{
    size_t have = 0;

    while (have < len) {
        int64_t left = deadline - assoc_now_ms();
        size_t got = 0;
        cp_status st;

        if (left <= 0)
            return READ_TIMEOUT;
        st = a->tp->read(a->tp_ctx, buf + have, len - have, &got,
                         left > INT32_MAX ? INT32_MAX : (int)left);
        if (st == CP_ERR_AGAIN)
            return READ_TIMEOUT;
        if (st != CP_OK || got == 0)
            return READ_CLOSED;
        have += got;
    }
    return READ_OK;
}

/* A read timed out: ARTIM if it runs, else the idle timeout. */
static assoc_event timeout_event(assoc *a)
{
    if (a->artim_deadline != 0) {
        a->artim_expired = true;
        assoc_set_detail(a, "ARTIM expired after %d ms", a->params.artim_ms);
        return ASSOC_EVT18;
    }
    a->idle_expired = true;
    assoc_set_detail(a, "no PDU for %d ms", a->params.idle_ms);
    return ASSOC_EVT15;
}

/* Sta13 after garbage: throws bytes away until the peer closes or ARTIM ends. */
static assoc_event drain_event(assoc *a, int64_t deadline)
{
    uint8_t scratch[4096];

    for (;;) {
        int64_t left = deadline - assoc_now_ms();
        size_t got = 0;
        cp_status st;

        if (left <= 0)
            return timeout_event(a);
        st = a->tp->read(a->tp_ctx, scratch, sizeof scratch, &got, (int)left);
        if (st == CP_ERR_AGAIN)
            return timeout_event(a);
        if (st != CP_OK || got == 0)
            return ASSOC_EVT17;
    }
}

static assoc_event event_of_type(pdu_type type)
{
    switch (type) {
    case PDU_ASSOCIATE_RQ: return ASSOC_EVT6;
    case PDU_ASSOCIATE_AC: return ASSOC_EVT3;
    case PDU_ASSOCIATE_RJ: return ASSOC_EVT4;
    case PDU_P_DATA_TF: return ASSOC_EVT10;
    case PDU_RELEASE_RQ: return ASSOC_EVT12;
    case PDU_RELEASE_RP: return ASSOC_EVT13;
    case PDU_ABORT: return ASSOC_EVT16;
    }
    return ASSOC_EVT19;
}

/* The largest PDU length accepted in the current state. */
static uint32_t state_max(const assoc *a)
{
    if (a->state == ASSOC_STA2 || a->state == ASSOC_STA5)
        return PDU_ASSOCIATE_MAX;
    return a->params.max_pdu;
}

/* Reads the next PDU (or notices a closed transport or a timer) as an event. */
static cp_status next_event(assoc *a, assoc_event *ev)
{
    int64_t deadline = a->artim_deadline != 0 ? a->artim_deadline
                                              : assoc_now_ms() + a->params.idle_ms;
    uint8_t hdr[PDU_HEADER_LEN];
    pdu_type type;
    uint32_t len;
    cp_error err;
    read_result rr;

    if (a->drain) {
        *ev = drain_event(a, deadline);
        return CP_OK;
    }

    rr = read_full(a, hdr, sizeof hdr, deadline);
    if (rr != READ_OK) {
        *ev = rr == READ_CLOSED ? ASSOC_EVT17 : timeout_event(a);
        return CP_OK;
    }

    cp_error_clear(&err);
    if (pdu_read_header(hdr, sizeof hdr, state_max(a), &type, &len, &a->reason,
                        &err) != CP_OK) {
        assoc_set_detail(a, "bad PDU header: %s", err.detail);
        *ev = ASSOC_EVT19;
        return CP_OK;
    }

    cp_buf_reset(&a->rbuf);
    if (cp_buf_reserve(&a->rbuf, PDU_HEADER_LEN + (size_t)len) != CP_OK)
        return CP_ERR_NOMEM;
    memcpy(a->rbuf.data, hdr, sizeof hdr);
    rr = read_full(a, a->rbuf.data + PDU_HEADER_LEN, len, deadline);
    if (rr != READ_OK) {
        *ev = rr == READ_CLOSED ? ASSOC_EVT17 : timeout_event(a);
        return CP_OK;
    }
    a->rbuf.len = PDU_HEADER_LEN + (size_t)len;

    if (pdu_decode(a->rbuf.data, a->rbuf.len, state_max(a), &a->cur, &a->reason,
                   &err) != CP_OK) {
        assoc_set_detail(a, "bad PDU: %s", err.detail);
        *ev = ASSOC_EVT19;
        return CP_OK;
    }
    /* A PDU that decodes but does not belong in the state: reason 2. */
    a->reason = PDU_ABORT_UNEXPECTED_PDU;
    *ev = event_of_type(type);
    return CP_OK;
}

cp_status assoc_step(assoc *a, assoc_ind *ind)
{
    assoc_event ev;
    cp_status st;

    *ind = ASSOC_IND_NONE;
    pdu_destroy(a->cur);
    a->cur = NULL;
    if (a->state == ASSOC_STA1) {
        *ind = ASSOC_IND_CLOSED;
        return CP_OK;
    }
    if (a->state == ASSOC_STA3 || a->state == ASSOC_STA4)
        return CP_ERR_INVALID;

    st = next_event(a, &ev);
    if (st != CP_OK)
        return st;
    a->local.abort.source = PDU_ABORT_SOURCE_USER;
    a->local.abort.reason = 0;

    if (ev == ASSOC_EVT15) {
        st = assoc_abort(a);
        *ind = ASSOC_IND_TIMEOUT;
        return st;
    }
    st = assoc_dispatch(a, ev, ind);
    if (ev == ASSOC_EVT19 && a->state == ASSOC_STA13)
        a->drain = true;
    return st == CP_ERR_IO ? CP_OK : st;
}

const pdu_assoc *assoc_request_pdu(const assoc *a)
{
    return a->rq != NULL ? &a->rq->assoc : NULL;
}

const pdu_pdata *assoc_pdvs(const assoc *a)
{
    return a->cur != NULL && a->cur->type == PDU_P_DATA_TF ? &a->cur->pdata : NULL;
}

const pdu_reject *assoc_rejection(const assoc *a)
{
    return &a->rejection;
}

const assoc_context *assoc_find_context(const assoc *a, uint8_t id)
{
    for (size_t i = 0; i < a->ctx_count; i++) {
        if (a->ctx[i].id == id)
            return &a->ctx[i];
    }
    return NULL;
}

size_t assoc_context_count(const assoc *a)
{
    return a->ctx_count;
}

const assoc_context *assoc_context_at(const assoc *a, size_t i)
{
    return i < a->ctx_count ? &a->ctx[i] : NULL;
}

const char *assoc_calling_ae(const assoc *a)
{
    return a->calling;
}

const char *assoc_called_ae(const assoc *a)
{
    return a->called;
}

uint32_t assoc_peer_max_pdu(const assoc *a)
{
    return a->peer_max;
}

/* --- negotiation (acceptor) --------------------------------------------- */

static bool uid_in(const char *uid, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(uid, list[i]) == 0)
            return true;
    }
    return false;
}

bool assoc_abstract_supported(const char *uid, unsigned services)
{
    size_t len = strlen(uid);

    if ((services & ASSOC_SERVICE_VERIFICATION) && strcmp(uid, ASSOC_VERIFICATION_UID) == 0)
        return true;
    if ((services & ASSOC_SERVICE_STORAGE) && dcm_uid_is_storage_sop_class(uid, len))
        return true;
    if ((services & ASSOC_SERVICE_QUERY) &&
        uid_in(uid, assoc_query_uids, sizeof assoc_query_uids / sizeof *assoc_query_uids))
        return true;
    if ((services & ASSOC_SERVICE_RETRIEVE) &&
        uid_in(uid, assoc_retrieve_uids,
               sizeof assoc_retrieve_uids / sizeof *assoc_retrieve_uids))
        return true;
    return false;
}

/*
 * Storage keeps what it receives as it came: every transfer syntax the
 * reader knows, encapsulated and deflated included. Other services carry
 * small data sets we parse: the three uncompressed syntaxes.
 */
static bool ts_supported(const char *abstract, const char *ts_uid)
{
    const dcm_transfer_syntax *ts = dcm_ts_lookup(ts_uid, strlen(ts_uid));

    if (ts == NULL)
        return false;
    if (dcm_uid_is_storage_sop_class(abstract, strlen(abstract)))
        return true;
    return ts == &dcm_ts_implicit_le || ts == &dcm_ts_explicit_le || ts == &dcm_ts_explicit_be;
}

static void negotiate_context(const assoc_policy *policy, const pdu_pres_ctx *in,
                              pdu_pres_ctx *out, pdu_uid *ts_out)
{
    out->id = in->id;
    out->ts = ts_out;
    out->ts_count = 1;
    ts_out->value[0] = '\0';
    if (!assoc_abstract_supported(in->abstract_syntax.value, policy->services)) {
        out->result = PDU_PC_ABSTRACT_SYNTAX_NOT_SUPPORTED;
        out->ts_count = 0;
        return;
    }
    for (size_t t = 0; t < in->ts_count; t++) {
        if (ts_supported(in->abstract_syntax.value, in->ts[t].value)) {
            out->result = PDU_PC_ACCEPTANCE;
            *ts_out = in->ts[t];
            return;
        }
    }
    out->result = PDU_PC_TRANSFER_SYNTAXES_NOT_SUPPORTED;
    out->ts_count = 0;
}

/* What the -AC is built from; freed by ac_parts_free. */
typedef struct ac_parts {
    pdu_pres_ctx *pcs;
    pdu_uid *ts;
    pdu_role *roles;
    uint8_t *identity;
} ac_parts;

static void ac_parts_free(ac_parts *p)
{
    cp_free(p->pcs);
    cp_free(p->ts);
    cp_free(p->roles);
    cp_free(p->identity);
}

/*
 * Roles answered: the requestor may be SCU. It may also be SCP of a storage
 * SOP class when retrieve is negotiated: that is how C-GET sends its
 * C-STORE sub-operations back on the same association (PS3.4 C.4.3.3,
 * PS3.7 D.3.3.4).
 */
static size_t negotiate_roles(assoc *a, const pdu_user_info *ui, pdu_role *out)
{
    size_t n = 0;

    for (size_t r = 0; r < ui->role_count; r++) {
        const pdu_role *in = &ui->roles[r];
        const char *uid = in->sop_class.value;
        bool scp = in->scp_role != 0 && (a->policy->services & ASSOC_SERVICE_RETRIEVE) &&
                   dcm_uid_is_storage_sop_class(uid, strlen(uid));
        bool asked = false;

        for (size_t i = 0; i < a->ctx_count; i++) {
            assoc_context *c = &a->ctx[i];

            if (strcmp(c->abstract_syntax, in->sop_class.value) != 0)
                continue;
            asked = true;
            c->scu_role = in->scu_role != 0;
            c->scp_role = scp;
        }
        if (!asked)
            continue;
        out[n].sop_class = in->sop_class;
        out[n].scu_role = in->scu_role != 0;
        out[n].scp_role = scp ? 1 : 0;
        n++;
    }
    return n;
}

static cp_status build_contexts(assoc *a, const pdu_assoc *rq, ac_parts *parts)
{
    size_t n = rq->pc_count;

    parts->pcs = cp_calloc(n, sizeof *parts->pcs);
    parts->ts = cp_calloc(n, sizeof *parts->ts);
    a->ctx = cp_calloc(n, sizeof *a->ctx);
    if (parts->pcs == NULL || parts->ts == NULL || a->ctx == NULL)
        return CP_ERR_NOMEM;

    a->ctx_count = 0;
    for (size_t i = 0; i < n; i++) {
        assoc_context *c = &a->ctx[a->ctx_count];

        negotiate_context(a->policy, &rq->pcs[i], &parts->pcs[i], &parts->ts[i]);
        if (parts->pcs[i].result != PDU_PC_ACCEPTANCE)
            continue;
        c->id = rq->pcs[i].id;
        memcpy(c->abstract_syntax, rq->pcs[i].abstract_syntax.value, PDU_UID_SIZE);
        memcpy(c->transfer_syntax, parts->ts[i].value, PDU_UID_SIZE);
        c->scu_role = true;
        a->ctx_count++;
    }
    return CP_OK;
}

/* Fills the -AC's user information; CP_ERR_UNSUPPORTED when identity is refused. */
static cp_status build_user_info(assoc *a, const pdu_assoc *rq, pdu_assoc *ac,
                                 ac_parts *parts)
{
    const pdu_user_info *in = &rq->user;
    pdu_user_info *out = &ac->user;

    ac->has_user_info = true;
    out->has_max_length = true;
    out->max_length = a->params.max_pdu;
    snprintf(out->impl_class_uid.value, sizeof out->impl_class_uid.value, "%s",
             DCM_IMPLEMENTATION_CLASS_UID);
    snprintf(out->impl_version, sizeof out->impl_version, "%s",
             DCM_IMPLEMENTATION_VERSION_NAME);
    if (!rq->has_user_info)
        return CP_OK;

    if (in->has_async_window) {
        out->has_async_window = true;
        out->max_ops_invoked = 1;
        out->max_ops_performed = 1;
    }

    if (in->role_count > 0) {
        parts->roles = cp_calloc(in->role_count, sizeof *parts->roles);
        if (parts->roles == NULL)
            return CP_ERR_NOMEM;
        out->roles = parts->roles;
        out->role_count = negotiate_roles(a, in, parts->roles);
    }

    if (in->has_identity_rq) {
        size_t resp_len = 0;

        parts->identity = cp_malloc(PDU_USER_IDENTITY_MAX);
        if (parts->identity == NULL)
            return CP_ERR_NOMEM;
        if (a->policy->identity != NULL) {
            resp_len = PDU_USER_IDENTITY_MAX;
            if (a->policy->identity(a->policy->identity_ctx, rq->calling_ae,
                                    &in->identity_rq, parts->identity,
                                    &resp_len) != ASSOC_IDENTITY_ACCEPT)
                return CP_ERR_UNSUPPORTED;
        }
        /* Without a hook every identity is accepted, and said so when asked. */
        if (in->identity_rq.response_requested) {
            out->has_identity_ac = true;
            out->identity_response = parts->identity;
            out->identity_response_len = resp_len > PDU_USER_IDENTITY_MAX ? 0 : resp_len;
        }
    }
    return CP_OK;
}

cp_status assoc_reject(assoc *a, pdu_reject_result result, pdu_reject_source source,
                       uint8_t reason)
{
    a->local.reject.result = (uint8_t)result;
    a->local.reject.source = (uint8_t)source;
    a->local.reject.reason = reason;
    return assoc_dispatch(a, ASSOC_EVT8, NULL);
}

/* The service-user checks of docs/upper-layer.md, steps 2 and 3. */
static bool user_rejects(assoc *a, const pdu_assoc *rq, uint8_t *reason)
{
    const assoc_policy *pol = a->policy;

    if (strcmp(rq->app_context.value, PDU_APPLICATION_CONTEXT) != 0) {
        assoc_set_detail(a, "application context %s not supported", rq->app_context.value);
        *reason = PDU_REJECT_USER_CONTEXT_NAME;
        return true;
    }
    if (pol->ae_title != NULL && strcmp(rq->called_ae, pol->ae_title) != 0) {
        assoc_set_detail(a, "called AE title is not ours");
        *reason = PDU_REJECT_USER_CALLED_AE;
        return true;
    }
    if (pol->calling_allowed != NULL && !pol->calling_allowed(pol->calling_ctx,
                                                              rq->calling_ae)) {
        assoc_set_detail(a, "calling AE title not allowed");
        *reason = PDU_REJECT_USER_CALLING_AE;
        return true;
    }
    return false;
}

cp_status assoc_answer(assoc *a, bool *accepted)
{
    const pdu_assoc *rq = assoc_request_pdu(a);
    ac_parts parts = { NULL, NULL, NULL, NULL };
    pdu_assoc ac;
    uint8_t reason;
    cp_status st;

    *accepted = false;
    if (a->state != ASSOC_STA3 || rq == NULL || a->policy == NULL)
        return CP_ERR_INVALID;

    if (user_rejects(a, rq, &reason))
        return assoc_reject(a, PDU_REJECT_PERMANENT, PDU_REJECT_SOURCE_USER, reason);

    memset(&ac, 0, sizeof ac);
    ac.protocol_version = PDU_PROTOCOL_VERSION;
    memcpy(ac.called_ae, rq->called_ae, PDU_AE_SIZE);
    memcpy(ac.calling_ae, rq->calling_ae, PDU_AE_SIZE);
    memcpy(ac.app_context.value, PDU_APPLICATION_CONTEXT, sizeof PDU_APPLICATION_CONTEXT);
    st = build_contexts(a, rq, &parts);
    if (st == CP_OK)
        st = build_user_info(a, rq, &ac, &parts);
    if (st == CP_ERR_UNSUPPORTED) {
        assoc_set_detail(a, "user identity refused");
        st = assoc_reject(a, PDU_REJECT_PERMANENT, PDU_REJECT_SOURCE_USER,
                          PDU_REJECT_USER_NO_REASON);
        goto done;
    }
    if (st != CP_OK) {
        assoc_set_detail(a, "out of memory while negotiating");
        assoc_abort(a);
        goto done;
    }

    ac.pcs = parts.pcs;
    ac.pc_count = rq->pc_count;
    a->local.assoc = &ac;
    st = assoc_dispatch(a, ASSOC_EVT7, NULL);
    a->local.assoc = NULL;
    *accepted = st == CP_OK && a->state == ASSOC_STA6;

done:
    ac_parts_free(&parts);
    return st;
}

/* --- local primitives --------------------------------------------------- */

cp_status assoc_request(assoc *a, const pdu_assoc *rq, assoc_ind *ind)
{
    cp_status st;

    *ind = ASSOC_IND_NONE;
    if (a->state != ASSOC_STA1)
        return CP_ERR_INVALID;
    a->proposed = cp_calloc(PDU_CONTEXTS_MAX, sizeof *a->proposed);
    if (a->proposed == NULL)
        return CP_ERR_NOMEM;
    for (size_t i = 0; i < rq->pc_count; i++)
        memcpy(a->proposed[(rq->pcs[i].id - 1) / 2], rq->pcs[i].abstract_syntax.value,
               PDU_UID_SIZE);
    memcpy(a->calling, rq->calling_ae, PDU_AE_SIZE);
    memcpy(a->called, rq->called_ae, PDU_AE_SIZE);

    a->local.assoc = rq;
    st = assoc_dispatch(a, ASSOC_EVT1, NULL);
    if (st == CP_OK)
        st = assoc_dispatch(a, ASSOC_EVT2, ind);
    a->local.assoc = NULL;
    if (st != CP_OK)
        return st;

    while (a->state == ASSOC_STA5) {
        st = assoc_step(a, ind);
        if (st != CP_OK)
            return st;
    }
    if (*ind == ASSOC_IND_ACCEPTED || *ind == ASSOC_IND_REJECTED)
        return CP_OK;
    if (a->detail[0] == '\0')
        assoc_set_detail(a, "association failed before an answer");
    return CP_ERR_IO;
}

cp_status assoc_send_pdata(assoc *a, uint8_t pc_id, bool command, const void *data,
                           size_t len, bool last)
{
    cp_status st;

    a->local.pc_id = pc_id;
    a->local.command = command;
    a->local.data = data;
    a->local.len = len;
    a->local.last = last;
    st = assoc_dispatch(a, ASSOC_EVT9, NULL);
    a->local.data = NULL;
    return st;
}

cp_status assoc_release_request(assoc *a)
{
    return assoc_dispatch(a, ASSOC_EVT11, NULL);
}

cp_status assoc_release_response(assoc *a)
{
    return assoc_dispatch(a, ASSOC_EVT14, NULL);
}

cp_status assoc_release(assoc *a)
{
    assoc_ind ind;
    cp_status st = assoc_release_request(a);

    while (st == CP_OK && a->state != ASSOC_STA1) {
        st = assoc_step(a, &ind);
        if (st != CP_OK)
            break;
        if (ind == ASSOC_IND_COLLISION && a->state == ASSOC_STA9)
            st = assoc_release_response(a);
        else if (ind == ASSOC_IND_RELEASED && a->state == ASSOC_STA12)
            st = assoc_release_response(a);
        else if (ind == ASSOC_IND_ABORTED || ind == ASSOC_IND_TIMEOUT)
            return CP_ERR_IO;
    }
    return st;
}

static cp_status abort_with(assoc *a, uint8_t source, uint8_t reason)
{
    if (a->state == ASSOC_STA1 || a->state == ASSOC_STA13)
        return CP_OK;
    a->local.abort.source = source;
    a->local.abort.reason = reason;
    return assoc_dispatch(a, ASSOC_EVT15, NULL);
}

cp_status assoc_abort(assoc *a)
{
    return abort_with(a, PDU_ABORT_SOURCE_USER, 0);
}

cp_status assoc_abort_provider(assoc *a, pdu_abort_reason reason)
{
    return abort_with(a, PDU_ABORT_SOURCE_PROVIDER, (uint8_t)reason);
}

/* --- TCP transport ------------------------------------------------------ */

static cp_status tcp_read(void *ctx, void *buf, size_t len, size_t *got, int timeout_ms)
{
    assoc_tcp *t = ctx;
    struct pollfd pfd = { t->fd, POLLIN, 0 };
    ssize_t n;
    int rc;

    *got = 0;
    do {
        rc = poll(&pfd, 1, timeout_ms);
    } while (rc < 0 && errno == EINTR);
    if (rc == 0)
        return CP_ERR_AGAIN;
    if (rc < 0)
        return CP_ERR_IO;
    do {
        n = recv(t->fd, buf, len, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? CP_ERR_AGAIN : CP_ERR_IO;
    *got = (size_t)n;
    return CP_OK;
}

static cp_status tcp_write(void *ctx, const void *data, size_t len, int timeout_ms)
{
    assoc_tcp *t = ctx;
    const uint8_t *p = data;

    while (len > 0) {
        struct pollfd pfd = { t->fd, POLLOUT, 0 };
        ssize_t n;
        int rc;

        do {
            rc = poll(&pfd, 1, timeout_ms);
        } while (rc < 0 && errno == EINTR);
        if (rc == 0)
            return CP_ERR_AGAIN;
        if (rc < 0)
            return CP_ERR_IO;
        n = send(t->fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            return CP_ERR_IO;
        }
        p += n;
        len -= (size_t)n;
    }
    return CP_OK;
}

static void tcp_shutdown(void *ctx)
{
    assoc_tcp *t = ctx;

    shutdown(t->fd, SHUT_RDWR);
}

const assoc_transport assoc_tcp_transport = { tcp_read, tcp_write, tcp_shutdown };

cp_status assoc_tcp_tune(int fd)
{
    int one = 1;

    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        return CP_ERR_IO;
    if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) != 0)
        return CP_ERR_IO;
    return CP_OK;
}

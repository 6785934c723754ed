/*
 * scp.c - the DICOM server (PS3.8 upper layer acceptor, PS3.7 DIMSE, the
 * Verification and Storage service classes of PS3.4 Annexes A and B as SCP).
 *
 * One thread per association, at most max_associations at once; callers
 * beyond that get an A-ASSOCIATE-RJ "local limit exceeded" from one of a
 * few extra short-lived threads, and past those are closed at once. Every
 * thread is created with a small stack (SCP_THREAD_STACK); its buffers are
 * on the heap and bounded by the negotiated PDU sizes, so an association
 * costs a few megabytes at most whatever the size of the instances.
 *
 * Shutdown: scp_stop writes to a pipe the accept loop polls; the loop stops
 * accepting, waits for the associations to end, and after the deadline
 * shuts their sockets down, which ends their threads.
 */
#include "net/scp.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "core/log.h"

/* "[IPv6 address]:port" as getnameinfo writes it, with room to spare. */
#define SCP_PEER_SIZE 64

struct scp {
    scp_config cfg;
    scp_remote_ae *aes;
    char bind[256];
    int listen_fd;
    int stop_pipe[2];
    uint16_t port;
    pthread_mutex_t lock;
    pthread_cond_t idle;
    unsigned active;                    /* serving threads */
    unsigned rejecting;                 /* threads answering "limit exceeded" */
    int *fds;                           /* sockets of live threads, -1 when free */
    size_t fd_slots;
    uint64_t next_id;
};

/* One association being served. */
typedef struct session {
    scp *s;
    assoc *a;
    int fd;
    void *wrapped;                      /* the TLS layer's connection, or NULL */
    size_t slot;
    bool over_limit;
    uint64_t id;
    char peer[SCP_PEER_SIZE];
    unsigned allow;
    dimse_receiver rx;
    /* The message in progress. */
    dimse_command cmd;
    uint8_t pc_id;
    void *op;                           /* the store consumer's operation */
    bool answered;                      /* the outcome is decided before the data ends */
    uint16_t status;
    char comment[DIMSE_COMMENT_SIZE];
    uint64_t bytes;
    assoc_policy policy;
    /* A C-FIND, C-MOVE or C-GET: its identifier, run once it is whole. */
    cp_buf ident;
    bool qr_ready;
    bool qr_cancelled;
    bool qr_broken;
    bool have_sub_rsp;
    dimse_command sub_rsp;
    uint16_t next_sub_id;
    /* For the events hook: how the association went. */
    bool accepted;
    bool released;
    void *identity;                     /* the authoriser's, released at the end */
} session;

struct scp_qr_call {
    session *ss;
};

/* --- configuration helpers --------------------------------------------- */

cp_status scp_parse_allow(const char *text, unsigned *out)
{
    static const struct { const char *name; unsigned bits; } words[] = {
        { "echo", SCP_ALLOW_ECHO }, { "store", SCP_ALLOW_STORE },
        { "query", SCP_ALLOW_QUERY }, { "find", SCP_ALLOW_QUERY },
        { "retrieve", SCP_ALLOW_RETRIEVE }, { "move", SCP_ALLOW_RETRIEVE },
        { "get", SCP_ALLOW_RETRIEVE },
        { "all", SCP_ALLOW_ECHO | SCP_ALLOW_STORE | SCP_ALLOW_QUERY | SCP_ALLOW_RETRIEVE },
        { "none", 0 },
    };
    unsigned bits = SCP_ALLOW_ECHO;
    const char *p = text;

    while (*p != '\0') {
        const char *end;
        size_t len, i;

        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        if (*p == '\0')
            break;
        end = p;
        while (*end != '\0' && *end != ',' && *end != ' ' && *end != '\t')
            end++;
        len = (size_t)(end - p);
        for (i = 0; i < sizeof words / sizeof words[0]; i++) {
            if (strlen(words[i].name) == len && strncasecmp(words[i].name, p, len) == 0)
                break;
        }
        if (i == sizeof words / sizeof words[0])
            return CP_ERR_CONFIG;
        bits |= words[i].bits;
        p = end;
    }
    *out = bits;
    return CP_OK;
}

static const scp_remote_ae *find_ae(const scp *s, const char *title)
{
    for (size_t i = 0; i < s->cfg.ae_count; i++) {
        if (strcmp(s->aes[i].title, title) == 0)
            return &s->aes[i];
    }
    return NULL;
}

/* With an authoriser, the authoriser has decided on the calling AE already. */
static bool calling_allowed(void *ctx, const char *calling_ae)
{
    const scp *s = ctx;

    return s->cfg.authoriser.authorise != NULL || s->cfg.accept_unknown ||
           find_ae(s, calling_ae) != NULL;
}

/* --- the events hook ---------------------------------------------------- */

static void note_association(const session *ss, scp_assoc_result result)
{
    const scp_events *ev = &ss->s->cfg.events;

    if (ev->on_association != NULL)
        ev->on_association(ev->ctx, result);
}

/* A final response: pending ones (PS3.7 C.4.2) are not the outcome yet. */
static void note_dimse(const session *ss, uint16_t status)
{
    const scp_events *ev = &ss->s->cfg.events;

    if (ev->on_dimse != NULL && status != DIMSE_PENDING && status != 0xFF01)
        ev->on_dimse(ev->ctx, ss->cmd.command_field, status);
}

/* --- responses ---------------------------------------------------------- */

static cp_status send_response(session *ss, uint16_t status, const char *comment)
{
    dimse_command rsp;
    cp_buf buf = CP_BUF_INIT;
    cp_status st;

    note_dimse(ss, status);
    memset(&rsp, 0, sizeof rsp);
    rsp.command_field = (uint16_t)(ss->cmd.command_field | 0x8000u);
    rsp.data_set_type = DIMSE_NO_DATA_SET;
    rsp.fields = DIMSE_F_RESPONDED_TO | DIMSE_F_STATUS;
    rsp.responded_to = ss->cmd.message_id;
    rsp.status = status;
    if (ss->cmd.fields & DIMSE_F_AFFECTED_SOP_CLASS) {
        rsp.fields |= DIMSE_F_AFFECTED_SOP_CLASS;
        memcpy(rsp.affected_sop_class, ss->cmd.affected_sop_class, PDU_UID_SIZE);
    }
    if (ss->cmd.fields & DIMSE_F_AFFECTED_SOP_INSTANCE) {
        rsp.fields |= DIMSE_F_AFFECTED_SOP_INSTANCE;
        memcpy(rsp.affected_sop_instance, ss->cmd.affected_sop_instance, PDU_UID_SIZE);
    }
    /* An Error Comment goes with failures and warnings only (PS3.7 C.4). */
    if (status != DIMSE_SUCCESS && comment != NULL && comment[0] != '\0') {
        rsp.fields |= DIMSE_F_ERROR_COMMENT;
        snprintf(rsp.error_comment, sizeof rsp.error_comment, "%s", comment);
    }

    st = dimse_encode_command(&rsp, &buf, NULL);
    if (st == CP_OK)
        st = assoc_send_pdata(ss->a, ss->pc_id, true, buf.data, buf.len, true);
    cp_buf_free(&buf);
    return st;
}

/* The log line of a finished C-STORE: info on success, warn otherwise. */
static void log_store(const session *ss, uint16_t status, const char *comment)
{
    cp_log_level level = status == DIMSE_SUCCESS ? CP_LOG_INFO : CP_LOG_WARN;

    cp_log_write(level, "dicom.store",
                 "status=0x%04x sop_class_uid=%s sop_instance_uid=%s bytes=%" PRIu64
                 " comment=\"%s\"", status, ss->cmd.affected_sop_class,
                 ss->cmd.affected_sop_instance, ss->bytes, comment != NULL ? comment : "");
}

/* --- C-STORE ------------------------------------------------------------ */

/* Decides whether the C-STORE can go to the consumer, and starts it. */
static void cstore_begin(session *ss, const assoc_context *ctx)
{
    const scp_config *cfg = &ss->s->cfg;
    scp_store_info info;
    uint16_t status = DIMSE_OUT_OF_RESOURCES;

    ss->answered = true;
    if (!(ss->allow & SCP_ALLOW_STORE)) {
        ss->status = DIMSE_NOT_AUTHORIZED;
        snprintf(ss->comment, sizeof ss->comment, "calling AE may not store");
        return;
    }
    if (!(ss->cmd.fields & DIMSE_F_AFFECTED_SOP_CLASS) ||
        strcmp(ss->cmd.affected_sop_class, ctx->abstract_syntax) != 0) {
        ss->status = DIMSE_SOP_CLASS_NOT_SUPPORTED;
        snprintf(ss->comment, sizeof ss->comment, "SOP class is not the context's");
        return;
    }
    if (!(ss->cmd.fields & DIMSE_F_AFFECTED_SOP_INSTANCE) ||
        ss->cmd.affected_sop_instance[0] == '\0' || !dimse_has_data_set(&ss->cmd)) {
        ss->status = DIMSE_CANNOT_UNDERSTAND;
        snprintf(ss->comment, sizeof ss->comment, "C-STORE-RQ without instance or data");
        return;
    }
    if (cfg->store.begin == NULL) {
        ss->status = DIMSE_OUT_OF_RESOURCES;
        snprintf(ss->comment, sizeof ss->comment, "no storage configured");
        return;
    }

    info.assoc_id = ss->id;
    info.calling_ae = assoc_calling_ae(ss->a);
    info.called_ae = assoc_called_ae(ss->a);
    info.peer = ss->peer;
    info.sop_class_uid = ss->cmd.affected_sop_class;
    info.sop_instance_uid = ss->cmd.affected_sop_instance;
    info.transfer_syntax_uid = ctx->transfer_syntax;
    info.message_id = ss->cmd.message_id;
    info.move_originator_ae = ss->cmd.move_originator_ae;
    info.identity = ss->identity;
    if (cfg->store.begin(cfg->store.ctx, &info, &ss->op, &status) != CP_OK) {
        ss->op = NULL;
        ss->status = status;
        snprintf(ss->comment, sizeof ss->comment, "storage refused the instance");
        return;
    }
    ss->answered = false;
}

static cp_status cstore_data(session *ss, const uint8_t *data, size_t len, bool last)
{
    const scp_config *cfg = &ss->s->cfg;
    uint16_t status;

    ss->bytes += len;
    if (ss->op != NULL && len > 0 && cfg->store.write(ss->op, data, len) != CP_OK) {
        cfg->store.abort(ss->op);
        ss->op = NULL;
        ss->answered = true;
        ss->status = DIMSE_OUT_OF_RESOURCES;
        snprintf(ss->comment, sizeof ss->comment, "storage failed while writing");
    }
    if (!last)
        return CP_OK;

    if (ss->op != NULL) {
        ss->comment[0] = '\0';
        status = cfg->store.finish(ss->op, ss->comment, sizeof ss->comment);
        ss->op = NULL;
    } else {
        status = ss->status;
    }
    log_store(ss, status, ss->comment);
    return send_response(ss, status, ss->comment);
}

/* --- C-FIND, C-MOVE and C-GET (PS3.4 C.4) ----------------------------- */

static bool is_qr(uint16_t field)
{
    return field == DIMSE_C_FIND_RQ || field == DIMSE_C_MOVE_RQ || field == DIMSE_C_GET_RQ;
}

static void log_qr_refusal(const session *ss)
{
    cp_log_warn("dicom.qr", "op=%s status=0x%04x sop_class_uid=%s comment=\"%s\"",
                dimse_command_name(ss->cmd.command_field), ss->status,
                ss->cmd.affected_sop_class, ss->comment);
}

/* Checks a request before its identifier arrives; answered when refused. */
static void qr_begin(session *ss, const assoc_context *ctx)
{
    unsigned need = ss->cmd.command_field == DIMSE_C_FIND_RQ ? SCP_ALLOW_QUERY
                                                             : SCP_ALLOW_RETRIEVE;

    cp_buf_reset(&ss->ident);
    ss->answered = true;
    if (ss->s->cfg.qr.run == NULL) {
        ss->status = DIMSE_UNRECOGNIZED_OPERATION;
        snprintf(ss->comment, sizeof ss->comment, "query/retrieve not configured");
    } else if (!(ss->allow & need)) {
        ss->status = DIMSE_NOT_AUTHORIZED;
        snprintf(ss->comment, sizeof ss->comment, "calling AE may not do this");
    } else if (!(ss->cmd.fields & DIMSE_F_AFFECTED_SOP_CLASS) ||
               strcmp(ss->cmd.affected_sop_class, ctx->abstract_syntax) != 0) {
        ss->status = DIMSE_SOP_CLASS_NOT_SUPPORTED;
        snprintf(ss->comment, sizeof ss->comment, "SOP class is not the context's");
    } else if (!dimse_has_data_set(&ss->cmd)) {
        ss->status = DIMSE_DATA_SET_MISMATCH;
        snprintf(ss->comment, sizeof ss->comment, "request without identifier");
    } else {
        ss->answered = false;
    }
}

static cp_status qr_data(session *ss, const uint8_t *data, size_t len, bool last)
{
    if (!ss->answered && ss->ident.len + len > QR_IDENTIFIER_MAX) {
        ss->answered = true;
        ss->status = DIMSE_OUT_OF_RESOURCES;
        snprintf(ss->comment, sizeof ss->comment, "identifier too long");
    }
    if (!ss->answered && cp_buf_append(&ss->ident, data, len) != CP_OK) {
        ss->answered = true;
        ss->status = DIMSE_OUT_OF_RESOURCES;
        snprintf(ss->comment, sizeof ss->comment, "out of memory");
    }
    if (!last)
        return CP_OK;
    if (ss->answered) {
        log_qr_refusal(ss);
        return send_response(ss, ss->status, ss->comment);
    }
    ss->qr_ready = true;
    return CP_OK;
}

/* Runs the operation whose identifier arrived, outside the PDV loop. */
static void qr_run(session *ss)
{
    scp_qr_call call = { ss };

    ss->qr_ready = false;
    ss->qr_broken = false;
    ss->s->cfg.qr.run(ss->s->cfg.qr.ctx, &call);
    ss->qr_cancelled = false;
    cp_buf_reset(&ss->ident);
}

const dimse_command *scp_qr_command(const scp_qr_call *c)
{
    return &c->ss->cmd;
}

const assoc_context *scp_qr_context(const scp_qr_call *c)
{
    return assoc_find_context(c->ss->a, c->ss->pc_id);
}

unsigned scp_qr_allow(const scp_qr_call *c)
{
    return c->ss->allow;
}

const char *scp_qr_calling_ae(const scp_qr_call *c)
{
    return assoc_calling_ae(c->ss->a);
}

const char *scp_qr_called_ae(const scp_qr_call *c)
{
    return assoc_called_ae(c->ss->a);
}

uint64_t scp_qr_assoc_id(const scp_qr_call *c)
{
    return c->ss->id;
}

void *scp_qr_identity(const scp_qr_call *c)
{
    return c->ss->identity;
}

const char *scp_qr_peer(const scp_qr_call *c)
{
    return c->ss->peer;
}

const uint8_t *scp_qr_identifier(const scp_qr_call *c, size_t *len)
{
    *len = c->ss->ident.len;
    return c->ss->ident.data;
}

const scp_remote_ae *scp_qr_remote_ae(const scp_qr_call *c, const char *title)
{
    return find_ae(c->ss->s, title);
}

cp_status scp_qr_respond(scp_qr_call *c, uint16_t status, const scp_qr_counts *counts,
                         const void *ident, size_t len, const char *comment)
{
    session *ss = c->ss;
    dimse_command rsp;
    cp_buf buf = CP_BUF_INIT;
    cp_status st;

    note_dimse(ss, status);
    memset(&rsp, 0, sizeof rsp);
    rsp.command_field = (uint16_t)(ss->cmd.command_field | 0x8000u);
    rsp.data_set_type = ident != NULL ? 0x0000 : DIMSE_NO_DATA_SET;
    rsp.fields = DIMSE_F_RESPONDED_TO | DIMSE_F_STATUS | DIMSE_F_AFFECTED_SOP_CLASS;
    rsp.responded_to = ss->cmd.message_id;
    rsp.status = status;
    memcpy(rsp.affected_sop_class, ss->cmd.affected_sop_class, PDU_UID_SIZE);
    if (counts != NULL && counts->present) {
        rsp.fields |= DIMSE_F_COMPLETED | DIMSE_F_FAILED | DIMSE_F_WARNING;
        rsp.completed = counts->completed;
        rsp.failed = counts->failed;
        rsp.warning = counts->warning;
        if (status == DIMSE_PENDING) {
            rsp.fields |= DIMSE_F_REMAINING;
            rsp.remaining = counts->remaining;
        }
    }
    if (comment != NULL && comment[0] != '\0' && status != DIMSE_SUCCESS &&
        status != DIMSE_PENDING && status != 0xFF01) {
        rsp.fields |= DIMSE_F_ERROR_COMMENT;
        snprintf(rsp.error_comment, sizeof rsp.error_comment, "%s", comment);
    }

    st = dimse_encode_command(&rsp, &buf, NULL);
    if (st == CP_OK)
        st = assoc_send_pdata(ss->a, ss->pc_id, true, buf.data, buf.len, true);
    if (st == CP_OK && ident != NULL)
        st = assoc_send_pdata(ss->a, ss->pc_id, false, ident, len, true);
    cp_buf_free(&buf);
    if (st != CP_OK)
        ss->qr_broken = true;
    return st;
}

/* What arrives while an operation runs: C-CANCEL-RQ and C-STORE-RSP. */
static cp_status qr_on_command(void *ctx, uint8_t pc_id, const dimse_command *cmd)
{
    session *ss = ctx;

    (void)pc_id;
    if (cmd->command_field == DIMSE_C_CANCEL_RQ) {
        if (cmd->responded_to == ss->cmd.message_id)
            ss->qr_cancelled = true;
        return CP_OK;
    }
    if (cmd->command_field == DIMSE_C_STORE_RSP) {
        ss->sub_rsp = *cmd;
        ss->have_sub_rsp = true;
        return CP_OK;
    }
    cp_log_warn("dicom.protocol", "detail=\"%s during a retrieve or query, ignored\"",
                dimse_command_name(cmd->command_field));
    return CP_OK;
}

static cp_status qr_on_data(void *ctx, uint8_t pc_id, const uint8_t *data, size_t len,
                            bool last)
{
    (void)ctx;
    (void)pc_id;
    (void)data;
    (void)len;
    (void)last;
    return CP_OK;
}

/* Reads one PDU and feeds it; false when the association ended. */
static bool qr_step(session *ss)
{
    dimse_handler h = { qr_on_command, qr_on_data, ss };
    const pdu_pdata *pd;
    assoc_ind ind;

    if (assoc_step(ss->a, &ind) != CP_OK || assoc_is_closed(ss->a) ||
        ind == ASSOC_IND_ABORTED || ind == ASSOC_IND_TIMEOUT) {
        ss->qr_broken = true;
        return false;
    }
    if (ind == ASSOC_IND_RELEASE_RQ) {
        /* A release in the middle of an operation: the peer gave up on it. */
        assoc_release_response(ss->a);
        ss->released = true;
        ss->qr_broken = true;
        return false;
    }
    if (ind != ASSOC_IND_PDATA)
        return true;
    pd = assoc_pdvs(ss->a);
    for (size_t i = 0; pd != NULL && i < pd->count; i++) {
        cp_error err;

        cp_error_clear(&err);
        if (dimse_receiver_feed(&ss->rx, &pd->pdvs[i], &h, &err) != CP_OK) {
            assoc_abort_provider(ss->a, PDU_ABORT_INVALID_PARAM);
            ss->qr_broken = true;
            return false;
        }
    }
    return true;
}

bool scp_qr_cancelled(scp_qr_call *c)
{
    session *ss = c->ss;

    while (!ss->qr_cancelled && !ss->qr_broken) {
        const assoc_wrap *w = &ss->s->cfg.wrap;
        struct pollfd p = { ss->fd, POLLIN, 0 };

        /* TLS may hold a whole record already read off the socket. */
        if (!(ss->wrapped != NULL && w->pending != NULL && w->pending(ss->wrapped)) &&
            poll(&p, 1, 0) <= 0)
            break;
        if (!qr_step(ss))
            break;
    }
    return ss->qr_cancelled;
}

bool scp_qr_broken(const scp_qr_call *c)
{
    return c->ss->qr_broken;
}

uint8_t scp_qr_store_context(const scp_qr_call *c, const char *sop_class, const char *ts)
{
    for (size_t i = 0; i < assoc_context_count(c->ss->a); i++) {
        const assoc_context *pc = assoc_context_at(c->ss->a, i);

        if (pc->scp_role && strcmp(pc->abstract_syntax, sop_class) == 0 &&
            strcmp(pc->transfer_syntax, ts) == 0)
            return pc->id;
    }
    return 0;
}

cp_status scp_qr_store_command(scp_qr_call *c, uint8_t pc_id, dimse_command *cmd)
{
    session *ss = c->ss;
    cp_buf buf = CP_BUF_INIT;
    cp_status st;

    cmd->message_id = ++ss->next_sub_id;
    cmd->fields |= DIMSE_F_MESSAGE_ID;
    st = dimse_encode_command(cmd, &buf, NULL);
    if (st == CP_OK)
        st = assoc_send_pdata(ss->a, pc_id, true, buf.data, buf.len, true);
    cp_buf_free(&buf);
    if (st != CP_OK)
        ss->qr_broken = true;
    return st;
}

cp_status scp_qr_store_data(scp_qr_call *c, uint8_t pc_id, const void *data, size_t len,
                            bool last)
{
    cp_status st = assoc_send_pdata(c->ss->a, pc_id, false, data, len, last);

    if (st != CP_OK)
        c->ss->qr_broken = true;
    return st;
}

cp_status scp_qr_store_wait(scp_qr_call *c, dimse_command *rsp)
{
    session *ss = c->ss;

    ss->have_sub_rsp = false;
    while (!ss->have_sub_rsp) {
        if (!qr_step(ss))
            return CP_ERR_IO;
    }
    *rsp = ss->sub_rsp;
    return CP_OK;
}

/* --- DIMSE dispatch ----------------------------------------------------- */

static cp_status on_command(void *ctx, uint8_t pc_id, const dimse_command *cmd)
{
    session *ss = ctx;
    const assoc_context *pc = assoc_find_context(ss->a, pc_id);

    if (pc == NULL) {
        cp_log_warn("dicom.protocol", "detail=\"command on presentation context %u, "
                    "which was not accepted\"", pc_id);
        return CP_ERR_MALFORMED;
    }
    if (cmd->command_field == DIMSE_C_CANCEL_RQ) {
        /* In the PDU that completed a query: the query has not started yet. */
        if (ss->qr_ready && cmd->responded_to == ss->cmd.message_id)
            ss->qr_cancelled = true;
        return CP_OK;
    }
    ss->cmd = *cmd;
    ss->pc_id = pc_id;
    ss->answered = false;
    ss->status = DIMSE_SUCCESS;
    ss->comment[0] = '\0';
    ss->bytes = 0;

    switch (cmd->command_field) {
    case DIMSE_C_ECHO_RQ:
        ss->answered = true;
        cp_log_debug("dicom.echo", "message_id=%u", cmd->message_id);
        break;
    case DIMSE_C_STORE_RQ:
        cstore_begin(ss, pc);
        if (ss->answered && !dimse_has_data_set(cmd)) {
            log_store(ss, ss->status, ss->comment);
            return send_response(ss, ss->status, ss->comment);
        }
        return CP_OK;
    case DIMSE_C_FIND_RQ:
    case DIMSE_C_MOVE_RQ:
    case DIMSE_C_GET_RQ:
        qr_begin(ss, pc);
        if (ss->answered && !dimse_has_data_set(cmd)) {
            log_qr_refusal(ss);
            return send_response(ss, ss->status, ss->comment);
        }
        return CP_OK;
    default:
        if (DIMSE_IS_RESPONSE(cmd->command_field)) {
            cp_log_warn("dicom.protocol", "detail=\"unexpected %s\"",
                        dimse_command_name(cmd->command_field));
            return CP_OK;
        }
        ss->answered = true;
        ss->status = DIMSE_UNRECOGNIZED_OPERATION;
        snprintf(ss->comment, sizeof ss->comment, "operation not supported");
        cp_log_warn("dicom.unsupported", "command_field=0x%04x status=0x%04x "
                    "sop_class_uid=%s", cmd->command_field, ss->status,
                    cmd->affected_sop_class);
        break;
    }
    if (dimse_has_data_set(cmd))
        return CP_OK;
    return send_response(ss, ss->status, ss->comment);
}

static cp_status on_data(void *ctx, uint8_t pc_id, const uint8_t *data, size_t len, bool last)
{
    session *ss = ctx;

    (void)pc_id;
    if (ss->cmd.command_field == DIMSE_C_STORE_RQ)
        return cstore_data(ss, data, len, last);
    if (is_qr(ss->cmd.command_field))
        return qr_data(ss, data, len, last);
    if (last)
        return send_response(ss, ss->status, ss->comment);
    return CP_OK;
}

/* Feeds the PDVs of one P-DATA-TF; false when the association was aborted. */
static bool handle_pdata(session *ss)
{
    const pdu_pdata *pd = assoc_pdvs(ss->a);
    const scp_events *ev = &ss->s->cfg.events;
    dimse_handler h = { on_command, on_data, ss };
    uint64_t bytes = 0;
    cp_error err;

    if (pd == NULL)
        return true;
    for (size_t i = 0; i < pd->count; i++)
        bytes += pd->pdvs[i].len;
    if (ev->on_bytes != NULL)
        ev->on_bytes(ev->ctx, bytes);

    for (size_t i = 0; i < pd->count; i++) {
        cp_status st;

        cp_error_clear(&err);
        st = dimse_receiver_feed(&ss->rx, &pd->pdvs[i], &h, &err);
        if (st == CP_OK)
            continue;
        if (assoc_is_closed(ss->a))
            return false;
        cp_log_warn("dicom.abort", "status=%s detail=\"%s\"", cp_status_name(st),
                    err.detail[0] != '\0' ? err.detail : assoc_detail(ss->a));
        assoc_abort_provider(ss->a, PDU_ABORT_INVALID_PARAM);
        return false;
    }
    return true;
}

/* --- one association ---------------------------------------------------- */

static void set_context(const session *ss, const char *calling, const char *called)
{
    char ctx[256];

    if (calling != NULL)
        snprintf(ctx, sizeof ctx, "assoc=%" PRIu64 " calling_ae=%s called_ae=%s peer=%s",
                 ss->id, calling, called, ss->peer);
    else
        snprintf(ctx, sizeof ctx, "assoc=%" PRIu64 " peer=%s", ss->id, ss->peer);
    cp_log_context_set(ctx);
}

static void log_rejection(const session *ss)
{
    const pdu_reject *rj = assoc_rejection(ss->a);

    cp_log_warn("dicom.assoc.rejected", "result=%u source=%u reason=%u detail=\"%s\"",
                rj->result, rj->source, rj->reason, assoc_detail(ss->a));
}

/* One line when a caller proposed query or retrieve contexts it may not use. */
static void log_refused_contexts(const session *ss, const pdu_assoc *rq)
{
    unsigned all = ASSOC_SERVICE_QUERY | ASSOC_SERVICE_RETRIEVE;
    size_t refused = 0;

    for (size_t i = 0; i < rq->pc_count; i++) {
        const char *uid = rq->pcs[i].abstract_syntax.value;

        if (assoc_abstract_supported(uid, all) &&
            !assoc_abstract_supported(uid, ss->policy.services))
            refused++;
    }
    if (refused > 0)
        cp_log_warn("dicom.assoc.refused", "contexts=%zu detail=\"query/retrieve contexts "
                    "refused: calling AE not allowed\"", refused);
}

/* Gives the authoriser's identity back, once. */
static void release_identity(session *ss)
{
    const scp_authoriser *au = &ss->s->cfg.authoriser;

    if (ss->identity != NULL && au->release != NULL)
        au->release(au->ctx, ss->identity);
    ss->identity = NULL;
}

/* The rules assoc_answer checks before the calling AE (docs/upper-layer.md). */
static bool passes_ae_rules(const session *ss, const pdu_assoc *rq)
{
    return strcmp(rq->app_context.value, PDU_APPLICATION_CONTEXT) == 0 &&
           strcmp(rq->called_ae, ss->s->cfg.ae_title) == 0;
}

/*
 * Asks the authoriser; true when it accepted (ss->identity and ss->allow
 * then set), false when it rejected and the -RJ has been sent.
 */
static bool authorise(session *ss, const pdu_assoc *rq, bool configured)
{
    static const char *const why[] = {
        [SCP_AUTH_REJECT] = "refused by the authoriser",
        [SCP_AUTH_REJECT_CALLING_AE] = "calling AE title not recognised",
        [SCP_AUTH_REJECT_TRANSIENT] = "the authoriser cannot decide now",
    };
    const scp_authoriser *au = &ss->s->cfg.authoriser;
    const pdu_identity_rq *id = &rq->user.identity_rq;
    scp_assoc_info info;
    scp_auth_result res;
    unsigned allow = ss->allow;
    void *identity = NULL;

    memset(&info, 0, sizeof info);
    info.assoc_id = ss->id;
    info.calling_ae = rq->calling_ae;
    info.called_ae = rq->called_ae;
    info.peer = ss->peer;
    info.configured = configured;
    info.has_identity = rq->has_user_info && rq->user.has_identity_rq;
    if (info.has_identity) {
        info.identity_type = id->type;
        info.identity_response_requested = id->response_requested;
        info.identity_primary = id->primary;
        info.identity_primary_len = id->primary_len;
        info.identity_secondary = id->secondary;
        info.identity_secondary_len = id->secondary_len;
    }

    res = au->authorise(au->ctx, &info, &allow, &identity);
    if (res == SCP_AUTH_ACCEPT) {
        ss->allow = allow | SCP_ALLOW_ECHO;
        ss->identity = identity;
        return true;
    }
    if (identity != NULL && au->release != NULL)
        au->release(au->ctx, identity);

    if (res == SCP_AUTH_REJECT_TRANSIENT)
        assoc_reject(ss->a, PDU_REJECT_TRANSIENT, PDU_REJECT_SOURCE_PRESENTATION,
                     PDU_REJECT_PRESENTATION_CONGESTION);
    else
        assoc_reject(ss->a, PDU_REJECT_PERMANENT, PDU_REJECT_SOURCE_USER,
                     res == SCP_AUTH_REJECT_CALLING_AE ? PDU_REJECT_USER_CALLING_AE
                                                       : PDU_REJECT_USER_NO_REASON);
    note_association(ss, SCP_ASSOC_REJECTED);
    cp_log_warn("dicom.assoc.rejected", "result=%u source=%u reason=%u detail=\"%s\"",
                assoc_rejection(ss->a)->result, assoc_rejection(ss->a)->source,
                assoc_rejection(ss->a)->reason,
                (unsigned)res < sizeof why / sizeof why[0] && why[res] != NULL
                    ? why[res] : "refused by the authoriser");
    return false;
}

static void on_associate_rq(session *ss)
{
    const pdu_assoc *rq = assoc_request_pdu(ss->a);
    const scp_remote_ae *ae;
    bool accepted = false;

    set_context(ss, rq->calling_ae, rq->called_ae);
    ae = find_ae(ss->s, rq->calling_ae);
    ss->allow = ae != NULL ? (ae->allow | SCP_ALLOW_ECHO) : (SCP_ALLOW_ECHO | SCP_ALLOW_STORE);
    if (ss->s->cfg.authoriser.authorise != NULL && passes_ae_rules(ss, rq) &&
        !authorise(ss, rq, ae != NULL))
        return;
    /*
     * Query and retrieve contexts are offered only to callers allowed them:
     * the others see those contexts rejected at negotiation (PS3.8 9.3.3.2),
     * which PS3.4 C.4 leaves as the way to refuse a whole service.
     */
    if (ss->s->cfg.qr.run != NULL && (ss->allow & SCP_ALLOW_QUERY))
        ss->policy.services |= ASSOC_SERVICE_QUERY;
    if (ss->s->cfg.qr.run != NULL && (ss->allow & SCP_ALLOW_RETRIEVE))
        ss->policy.services |= ASSOC_SERVICE_RETRIEVE;
    log_refused_contexts(ss, rq);
    if (assoc_answer(ss->a, &accepted) != CP_OK && !accepted) {
        cp_log_warn("dicom.assoc.failed", "detail=\"%s\"", assoc_detail(ss->a));
        release_identity(ss);
        return;
    }
    if (!accepted) {
        release_identity(ss);
        note_association(ss, SCP_ASSOC_REJECTED);
        log_rejection(ss);
        return;
    }
    ss->accepted = true;
    note_association(ss, SCP_ASSOC_ACCEPTED);
    cp_log_info("dicom.assoc.accepted", "contexts=%zu proposed=%zu peer_max_pdu=%u",
                assoc_context_count(ss->a), rq->pc_count,
                (unsigned)assoc_peer_max_pdu(ss->a));
}

/* Runs the association to its end. */
static void serve(session *ss)
{
    scp *s = ss->s;
    assoc_policy *policy = &ss->policy;
    assoc_ind ind = ASSOC_IND_NONE;

    memset(policy, 0, sizeof *policy);
    policy->ae_title = s->cfg.ae_title;
    policy->calling_allowed = calling_allowed;
    policy->calling_ctx = s;
    policy->services = ASSOC_SERVICE_VERIFICATION | ASSOC_SERVICE_STORAGE;
    policy->identity = s->cfg.identity;
    policy->identity_ctx = s->cfg.identity_ctx;
    policy->over_limit = ss->over_limit;

    if (assoc_start_acceptor(ss->a, policy) != CP_OK)
        return;
    while (!assoc_is_closed(ss->a)) {
        assoc_state before = assoc_get_state(ss->a);

        if (assoc_step(ss->a, &ind) != CP_OK) {
            assoc_abort(ss->a);
            break;
        }
        switch (ind) {
        case ASSOC_IND_ASSOCIATE_RQ:
            on_associate_rq(ss);
            break;
        case ASSOC_IND_REJECTED:
            set_context(ss, assoc_calling_ae(ss->a), assoc_called_ae(ss->a));
            note_association(ss, SCP_ASSOC_REJECTED);
            log_rejection(ss);
            break;
        case ASSOC_IND_PDATA:
            if (handle_pdata(ss) && ss->qr_ready)
                qr_run(ss);
            break;
        case ASSOC_IND_RELEASE_RQ:
            if (!dimse_receiver_idle(&ss->rx))
                cp_log_warn("dicom.release", "detail=\"release in the middle of a message\"");
            assoc_release_response(ss->a);
            ss->released = true;
            cp_log_info("dicom.assoc.released", "detail=\"released by the peer\"");
            break;
        case ASSOC_IND_ABORTED:
            cp_log_warn("dicom.assoc.aborted", "detail=\"%s\"", assoc_detail(ss->a));
            break;
        case ASSOC_IND_TIMEOUT:
            cp_log_warn("dicom.assoc.timeout", "detail=\"%s\"", assoc_detail(ss->a));
            break;
        case ASSOC_IND_CLOSED:
            if (assoc_artim_expired(ss->a))
                cp_log_warn("dicom.assoc.artim", "state=%d detail=\"%s\"", (int)before,
                            assoc_detail(ss->a));
            else if (before == ASSOC_STA2)
                cp_log_info("dicom.assoc.closed", "detail=\"%s\"", assoc_detail(ss->a));
            break;
        default:
            break;
        }
    }
}

/*
 * Runs the configured layer's handshake (TLS) within ARTIM: a peer that
 * fails it gets one log line and its connection closed.
 */
static bool wrap_session(session *ss, const assoc_transport **tp, void **tp_ctx)
{
    const scp_config *cfg = &ss->s->cfg;
    char detail[CP_ERROR_DETAIL_MAX];
    int timeout = cfg->params.artim_ms > 0 ? cfg->params.artim_ms
                                           : ASSOC_ARTIM_DEFAULT_S * 1000;

    if (cfg->wrap.open == NULL)
        return true;
    detail[0] = '\0';
    if (cfg->wrap.open(cfg->wrap.ctx, ss->fd, NULL, timeout, tp, tp_ctx, detail,
                       sizeof detail) == CP_OK)
        return true;
    cp_log_warn("dicom.tls.handshake", "detail=\"%s\"", detail);
    *tp_ctx = NULL;
    return false;
}

static void *session_thread(void *arg)
{
    session *ss = arg;
    scp *s = ss->s;
    assoc_tcp tcp = { ss->fd };
    const assoc_transport *tp = &assoc_tcp_transport;
    void *tp_ctx = &tcp;
    bool wrapped;

    set_context(ss, NULL, NULL);
    dimse_receiver_init(&ss->rx);
    wrapped = wrap_session(ss, &tp, &tp_ctx);
    if (wrapped && tp_ctx != (void *)&tcp)
        ss->wrapped = tp_ctx;
    ss->a = wrapped ? assoc_create(tp, tp_ctx, &s->cfg.params) : NULL;
    if (ss->a != NULL)
        serve(ss);
    else if (wrapped)
        cp_log_error("dicom.nomem", "detail=\"cannot create an association\"");

    /* An accepted association that did not end in a release was aborted. */
    if (ss->accepted && !ss->released)
        note_association(ss, SCP_ASSOC_ABORTED);
    if (ss->accepted && s->cfg.events.on_close != NULL)
        s->cfg.events.on_close(s->cfg.events.ctx);

    if (ss->op != NULL) {
        cp_log_warn("dicom.store.incomplete", "sop_class_uid=%s sop_instance_uid=%s "
                    "bytes=%" PRIu64 " detail=\"association ended inside the data set\"",
                    ss->cmd.affected_sop_class, ss->cmd.affected_sop_instance, ss->bytes);
        s->cfg.store.abort(ss->op);
    }
    release_identity(ss);
    dimse_receiver_free(&ss->rx);
    cp_buf_free(&ss->ident);
    assoc_destroy(ss->a);
    if (s->cfg.wrap.open != NULL && tp_ctx != NULL && tp_ctx != (void *)&tcp)
        s->cfg.wrap.close(tp_ctx);
    cp_log_context_set(NULL);

    pthread_mutex_lock(&s->lock);
    s->fds[ss->slot] = -1;
    close(ss->fd);
    if (ss->over_limit)
        s->rejecting--;
    else
        s->active--;
    pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->lock);
    cp_free(ss);
    return NULL;
}

/* --- the server --------------------------------------------------------- */

cp_status scp_create(const scp_config *cfg, scp **out, cp_error *err)
{
    scp *s;

    *out = NULL;
    if (!pdu_ae_is_valid(cfg->ae_title, strlen(cfg->ae_title)))
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "AE title \"%s\" is not valid", cfg->ae_title);
    if (cfg->ae_count > SCP_REMOTE_AES_MAX)
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "more than %d remote AEs", SCP_REMOTE_AES_MAX);
    s = cp_calloc(1, sizeof *s);
    if (s == NULL)
        return CP_ERR_NOMEM;
    s->cfg = *cfg;
    s->listen_fd = -1;
    s->stop_pipe[0] = s->stop_pipe[1] = -1;
    if (s->cfg.max_associations == 0)
        s->cfg.max_associations = SCP_ASSOCIATIONS_DEFAULT;
    if (s->cfg.max_associations > SCP_ASSOCIATIONS_MAX)
        s->cfg.max_associations = SCP_ASSOCIATIONS_MAX;
    snprintf(s->bind, sizeof s->bind, "%s", cfg->bind != NULL ? cfg->bind : "127.0.0.1");
    s->cfg.bind = s->bind;
    s->fd_slots = s->cfg.max_associations + SCP_REJECT_THREADS_MAX;
    s->fds = cp_malloc(s->fd_slots * sizeof *s->fds);
    s->aes = cp_calloc(cfg->ae_count == 0 ? 1 : cfg->ae_count, sizeof *s->aes);
    if (s->fds == NULL || s->aes == NULL) {
        scp_destroy(s);
        return CP_ERR_NOMEM;
    }
    for (size_t i = 0; i < s->fd_slots; i++)
        s->fds[i] = -1;
    if (cfg->ae_count > 0)
        memcpy(s->aes, cfg->aes, cfg->ae_count * sizeof *s->aes);
    s->cfg.aes = s->aes;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->idle, NULL);
    *out = s;
    return CP_OK;
}

void scp_destroy(scp *s)
{
    if (s == NULL)
        return;
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    if (s->stop_pipe[0] >= 0) {
        close(s->stop_pipe[0]);
        close(s->stop_pipe[1]);
    }
    if (s->fds != NULL && s->aes != NULL) {
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->idle);
    }
    cp_free(s->fds);
    cp_free(s->aes);
    cp_free(s);
}

static cp_status open_listener(scp *s, const struct addrinfo *ai, cp_error *err)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    int one = 1, zero = 0;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;

    if (fd < 0)
        return cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "socket() failed: %s", strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ai->ai_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, SCP_LISTEN_BACKLOG) != 0) {
        int e = errno;

        close(fd);
        return cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "bind/listen on %s port %u failed: %s", s->bind,
                            s->cfg.port, strerror(e));
    }
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
        s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    s->listen_fd = fd;
    return CP_OK;
}

cp_status scp_listen(scp *s, cp_error *err)
{
    struct addrinfo hints, *res = NULL;
    char port[8];
    cp_status st;
    int rc;

    if (pipe2(s->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        return cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "pipe() failed: %s", strerror(errno));
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port, sizeof port, "%u", s->cfg.port);
    rc = getaddrinfo(s->bind, port, &hints, &res);
    if (rc != 0)
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "bind address \"%s\": %s", s->bind, gai_strerror(rc));
    st = open_listener(s, res, err);
    freeaddrinfo(res);
    return st;
}

uint16_t scp_port(const scp *s)
{
    return s->port;
}

unsigned scp_active(scp *s)
{
    unsigned n;

    pthread_mutex_lock(&s->lock);
    n = s->active;
    pthread_mutex_unlock(&s->lock);
    return n;
}

void scp_stop(scp *s)
{
    ssize_t rc = write(s->stop_pipe[1], "x", 1);

    (void)rc;
}

static void peer_name(const struct sockaddr_storage *sa, socklen_t len, char *out, size_t size)
{
    char host[NI_MAXHOST], serv[NI_MAXSERV];

    if (getnameinfo((const struct sockaddr *)sa, len, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(out, size, "unknown");
        return;
    }
    snprintf(out, size, sa->ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, serv);
}

/* Reserves a thread for a new connection; false when even the reject threads are busy. */
static bool reserve(scp *s, int fd, session *ss)
{
    bool ok = true;

    pthread_mutex_lock(&s->lock);
    if (s->active < s->cfg.max_associations) {
        s->active++;
    } else if (s->rejecting < SCP_REJECT_THREADS_MAX) {
        s->rejecting++;
        ss->over_limit = true;
    } else {
        ok = false;
    }
    if (ok) {
        for (size_t i = 0; i < s->fd_slots; i++) {
            if (s->fds[i] == -1) {
                s->fds[i] = fd;
                ss->slot = i;
                break;
            }
        }
        ss->id = ++s->next_id;
    }
    pthread_mutex_unlock(&s->lock);
    return ok;
}

static void unreserve(scp *s, session *ss)
{
    pthread_mutex_lock(&s->lock);
    s->fds[ss->slot] = -1;
    if (ss->over_limit)
        s->rejecting--;
    else
        s->active--;
    pthread_mutex_unlock(&s->lock);
}

static void accept_one(scp *s, pthread_attr_t *attr)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    session *ss;
    pthread_t th;
    int fd = accept4(s->listen_fd, (struct sockaddr *)&sa, &len, SOCK_CLOEXEC);

    if (fd < 0) {
        /* Out of descriptors or memory: let the associations free some. */
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            cp_log_warn("dicom.accept", "detail=\"accept failed: %s\"", strerror(errno));
            poll(NULL, 0, 100);
        }
        return;
    }
    assoc_tcp_tune(fd);
    ss = cp_calloc(1, sizeof *ss);
    if (ss == NULL) {
        close(fd);
        return;
    }
    ss->s = s;
    ss->fd = fd;
    peer_name(&sa, len, ss->peer, sizeof ss->peer);
    if (!reserve(s, fd, ss)) {
        cp_log_warn("dicom.overload", "peer=%s detail=\"connection closed: every "
                    "association and reject thread is busy\"", ss->peer);
        close(fd);
        cp_free(ss);
        return;
    }
    if (pthread_create(&th, attr, session_thread, ss) != 0) {
        cp_log_error("dicom.thread", "peer=%s detail=\"pthread_create failed\"", ss->peer);
        unreserve(s, ss);
        close(fd);
        cp_free(ss);
    }
}

/* After the deadline: shuts the sockets of the remaining associations down. */
static void wait_for_sessions(scp *s)
{
    struct timespec deadline;
    bool forced = false;

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += SCP_SHUTDOWN_DEADLINE_S;
    pthread_mutex_lock(&s->lock);
    while (s->active + s->rejecting > 0) {
        int rc = pthread_cond_timedwait(&s->idle, &s->lock, &deadline);

        if (rc != ETIMEDOUT)
            continue;
        /* Their reads now fail at once, so the threads end soon. */
        for (size_t i = 0; i < s->fd_slots; i++) {
            if (s->fds[i] >= 0)
                shutdown(s->fds[i], SHUT_RDWR);
        }
        if (!forced)
            cp_log_warn("dicom.shutdown", "associations=%u detail=\"closed at the "
                        "deadline\"", s->active + s->rejecting);
        forced = true;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 1;
    }
    pthread_mutex_unlock(&s->lock);
}

cp_status scp_run(scp *s, cp_error *err)
{
    pthread_attr_t attr;
    struct pollfd pfd[2];

    if (s->listen_fd < 0)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "scp_run before scp_listen");
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, SCP_THREAD_STACK);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);

    pfd[0].fd = s->listen_fd;
    pfd[0].events = POLLIN;
    pfd[1].fd = s->stop_pipe[0];
    pfd[1].events = POLLIN;
    for (;;) {
        int rc = poll(pfd, 2, -1);

        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0 || (pfd[1].revents & POLLIN))
            break;
        if (pfd[0].revents & POLLIN)
            accept_one(s, &attr);
    }
    pthread_attr_destroy(&attr);

    close(s->listen_fd);
    s->listen_fd = -1;
    wait_for_sessions(s);
    return CP_OK;
}

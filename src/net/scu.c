/*
 * scu.c - the association requestor (PS3.8 9.1 and 9.3.2) and DIMSE as
 * SCU (PS3.7 9.1.5 C-ECHO, 9.1.1 C-STORE of Part 10 files, streamed from
 * the file after its meta group).
 *
 * The transport is connected here (AE-1 of the state machine happens
 * before assoc_request is called, which then runs Evt1 and Evt2), with a
 * non-blocking connect bounded by connect_timeout_ms and TCP_NODELAY set.
 */
#include "net/scu.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "dicom/dataset.h"
#include "dicom/io.h"
#include "dicom/tag.h"
#include "dicom/ts.h"
#include "dicom/writer.h"

struct scu {
    assoc_tcp tcp;
    assoc_wrap wrap;                    /* a TLS layer, or open == NULL */
    void *wrap_ctx;
    assoc *a;
    uint16_t next_message_id;
    dimse_receiver rx;
    dimse_command rsp;
    bool have_rsp;
    cp_buf *rsp_data;                   /* where a response's data set goes, or NULL */
    bool rsp_data_over;
};

/* Connects one address within timeout_ms; the socket stays blocking after. */
static int connect_addr(const struct addrinfo *ai, int timeout_ms)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    int flags, soerr = 0;
    socklen_t len = sizeof soerr;
    struct pollfd pfd;

    if (fd < 0)
        return -1;
    flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS)
            goto fail;
        pfd.fd = fd;
        pfd.events = POLLOUT;
        if (poll(&pfd, 1, timeout_ms) != 1)
            goto fail;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr != 0)
            goto fail;
    }
    fcntl(fd, F_SETFL, flags);
    assoc_tcp_tune(fd);
    return fd;

fail:
    close(fd);
    return -1;
}

static int connect_host(const scu_config *cfg, cp_error *err)
{
    struct addrinfo hints, *res = NULL;
    char port[8];
    int fd = -1, rc;
    int timeout = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms
                                              : SCU_CONNECT_TIMEOUT_S * 1000;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(port, sizeof port, "%u", cfg->port);
    rc = getaddrinfo(cfg->host, port, &hints, &res);
    if (rc != 0) {
        cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                     "cannot resolve %s: %s", cfg->host, gai_strerror(rc));
        return -1;
    }
    for (const struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next)
        fd = connect_addr(ai, timeout);
    freeaddrinfo(res);
    if (fd < 0)
        cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                     "cannot connect to %s port %u", cfg->host, cfg->port);
    return fd;
}

/* Builds the -RQ in rq from the proposals; the arrays are the caller's. */
static cp_status build_rq(const scu_config *cfg, const scu_proposal *props, size_t count,
                          pdu_assoc *rq, pdu_pres_ctx *pcs, pdu_uid *ts, cp_error *err)
{
    size_t t = 0;

    memset(rq, 0, sizeof *rq);
    rq->protocol_version = PDU_PROTOCOL_VERSION;
    snprintf(rq->called_ae, sizeof rq->called_ae, "%s", cfg->called_ae);
    snprintf(rq->calling_ae, sizeof rq->calling_ae, "%s", cfg->calling_ae);
    snprintf(rq->app_context.value, sizeof rq->app_context.value, "%s",
             PDU_APPLICATION_CONTEXT);
    for (size_t i = 0; i < count; i++) {
        pcs[i].id = (uint8_t)(2 * i + 1);
        snprintf(pcs[i].abstract_syntax.value, PDU_UID_SIZE, "%s", props[i].abstract_syntax);
        pcs[i].ts = &ts[t];
        pcs[i].ts_count = props[i].ts_count;
        for (size_t k = 0; k < props[i].ts_count; k++)
            snprintf(ts[t++].value, PDU_UID_SIZE, "%s", props[i].transfer_syntaxes[k]);
    }
    rq->pcs = pcs;
    rq->pc_count = count;
    rq->has_user_info = true;
    rq->user.has_max_length = true;
    rq->user.max_length = cfg->params.max_pdu != 0 ? cfg->params.max_pdu
                                                   : PDU_RECEIVE_MAX_DEFAULT;
    snprintf(rq->user.impl_class_uid.value, PDU_UID_SIZE, "%s", DCM_IMPLEMENTATION_CLASS_UID);
    snprintf(rq->user.impl_version, sizeof rq->user.impl_version, "%s",
             DCM_IMPLEMENTATION_VERSION_NAME);
    (void)err;
    return CP_OK;
}

/* PS3.8 Table 9-21 in words, for people reading a failed echo or send. */
static const char *reject_text(const pdu_reject *rj)
{
    if (rj->source == PDU_REJECT_SOURCE_USER) {
        switch (rj->reason) {
        case PDU_REJECT_USER_CONTEXT_NAME: return "application context not supported";
        case PDU_REJECT_USER_CALLING_AE: return "calling AE title not recognized";
        case PDU_REJECT_USER_CALLED_AE: return "called AE title not recognized";
        default: return "no reason given";
        }
    }
    if (rj->source == PDU_REJECT_SOURCE_ACSE)
        return rj->reason == PDU_REJECT_ACSE_PROTOCOL_VERSION ? "protocol version not supported"
                                                              : "no reason given";
    return rj->reason == PDU_REJECT_PRESENTATION_LIMIT ? "local limit exceeded"
                                                       : "temporary congestion";
}

static cp_status negotiate(scu *u, const scu_config *cfg, const scu_proposal *props,
                           size_t count, cp_error *err)
{
    pdu_assoc rq;
    pdu_pres_ctx *pcs = NULL;
    pdu_uid *ts = NULL;
    size_t ts_total = 0;
    assoc_ind ind;
    cp_status st;

    if (count == 0 || count > PDU_CONTEXTS_MAX)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "%zu presentation contexts proposed", count);
    for (size_t i = 0; i < count; i++)
        ts_total += props[i].ts_count;
    pcs = cp_calloc(count, sizeof *pcs);
    ts = cp_calloc(ts_total == 0 ? 1 : ts_total, sizeof *ts);
    if (pcs == NULL || ts == NULL) {
        st = CP_ERR_NOMEM;
        goto done;
    }
    st = build_rq(cfg, props, count, &rq, pcs, ts, err);
    if (st != CP_OK)
        goto done;

    st = assoc_request(u->a, &rq, &ind);
    if (st != CP_OK) {
        st = cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "association failed: %s", assoc_detail(u->a));
    } else if (ind == ASSOC_IND_REJECTED) {
        const pdu_reject *rj = assoc_rejection(u->a);

        st = cp_error_set(err, CP_ERR_UNSUPPORTED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "association rejected (%s, %s; result %u source %u reason %u)",
                          rj->result == PDU_REJECT_TRANSIENT ? "transient" : "permanent",
                          reject_text(rj), rj->result, rj->source, rj->reason);
    } else if (assoc_context_count(u->a) == 0) {
        assoc_abort(u->a);
        st = cp_error_set(err, CP_ERR_UNSUPPORTED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "no presentation context accepted");
    }

done:
    cp_free(pcs);
    cp_free(ts);
    return st;
}

/* Puts the configured layer (TLS) over the connected socket, if any. */
static cp_status wrap_connection(scu *u, const scu_config *cfg, const assoc_transport **tp,
                                 void **tp_ctx, cp_error *err)
{
    char detail[CP_ERROR_DETAIL_MAX];
    int timeout = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms
                                              : SCU_CONNECT_TIMEOUT_S * 1000;

    *tp = &assoc_tcp_transport;
    *tp_ctx = &u->tcp;
    if (cfg->wrap.open == NULL)
        return CP_OK;
    detail[0] = '\0';
    if (cfg->wrap.open(cfg->wrap.ctx, u->tcp.fd, cfg->host, timeout, tp, tp_ctx, detail,
                       sizeof detail) != CP_OK)
        return cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "TLS with %s port %u failed: %s", cfg->host, cfg->port,
                            detail);
    u->wrap = cfg->wrap;
    u->wrap_ctx = *tp_ctx;
    return CP_OK;
}

cp_status scu_connect(const scu_config *cfg, const scu_proposal *props, size_t count,
                      scu **out, cp_error *err)
{
    const assoc_transport *tp;
    void *tp_ctx;
    scu *u;
    cp_status st;

    *out = NULL;
    u = cp_calloc(1, sizeof *u);
    if (u == NULL)
        return CP_ERR_NOMEM;
    u->tcp.fd = -1;
    u->next_message_id = 1;
    dimse_receiver_init(&u->rx);
    u->tcp.fd = connect_host(cfg, err);
    if (u->tcp.fd < 0) {
        st = CP_ERR_IO;
        goto fail;
    }
    st = wrap_connection(u, cfg, &tp, &tp_ctx, err);
    if (st != CP_OK)
        goto fail;
    u->a = assoc_create(tp, tp_ctx, &cfg->params);
    if (u->a == NULL) {
        st = CP_ERR_NOMEM;
        goto fail;
    }
    st = negotiate(u, cfg, props, count, err);
    if (st != CP_OK)
        goto fail;
    *out = u;
    return CP_OK;

fail:
    scu_destroy(u);
    return st;
}

uint8_t scu_context_for(const scu *u, const char *abstract_syntax, const char **ts)
{
    for (size_t i = 0; i < assoc_context_count(u->a); i++) {
        const assoc_context *c = assoc_context_at(u->a, i);

        if (strcmp(c->abstract_syntax, abstract_syntax) == 0) {
            if (ts != NULL)
                *ts = c->transfer_syntax;
            return c->id;
        }
    }
    return 0;
}

uint8_t scu_context_for_ts(const scu *u, const char *abstract_syntax, const char *ts)
{
    for (size_t i = 0; i < assoc_context_count(u->a); i++) {
        const assoc_context *c = assoc_context_at(u->a, i);

        if (strcmp(c->abstract_syntax, abstract_syntax) == 0 &&
            strcmp(c->transfer_syntax, ts) == 0)
            return c->id;
    }
    return 0;
}

cp_status scu_send_command(scu *u, uint8_t pc_id, dimse_command *cmd, cp_error *err)
{
    cp_buf buf = CP_BUF_INIT;
    cp_status st;

    cmd->message_id = u->next_message_id++;
    cmd->fields |= DIMSE_F_MESSAGE_ID;
    st = dimse_encode_command(cmd, &buf, err);
    if (st == CP_OK)
        st = assoc_send_pdata(u->a, pc_id, true, buf.data, buf.len, true);
    if (st != CP_OK)
        cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, "sending %s failed: %s",
                     dimse_command_name(cmd->command_field), assoc_detail(u->a));
    cp_buf_free(&buf);
    return st;
}

cp_status scu_send_data(scu *u, uint8_t pc_id, const void *data, size_t len, bool last,
                        cp_error *err)
{
    cp_status st = assoc_send_pdata(u->a, pc_id, false, data, len, last);

    if (st != CP_OK)
        cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                     "sending a data set failed: %s", assoc_detail(u->a));
    return st;
}

static cp_status on_rsp(void *ctx, uint8_t pc_id, const dimse_command *cmd)
{
    scu *u = ctx;

    (void)pc_id;
    if (!DIMSE_IS_RESPONSE(cmd->command_field))
        return CP_OK;
    u->rsp = *cmd;
    /* A response with a data set is whole once its last fragment came. */
    u->have_rsp = u->rsp_data == NULL || !dimse_has_data_set(cmd);
    return CP_OK;
}

static cp_status on_rsp_data(void *ctx, uint8_t pc_id, const uint8_t *data, size_t len,
                             bool last)
{
    scu *u = ctx;

    (void)pc_id;
    if (u->rsp_data == NULL)
        return CP_OK;
    if (u->rsp_data->len + len > QR_IDENTIFIER_MAX)
        u->rsp_data_over = true;
    else if (cp_buf_append(u->rsp_data, data, len) != CP_OK)
        return CP_ERR_NOMEM;
    if (last)
        u->have_rsp = true;
    return CP_OK;
}

cp_status scu_wait_response(scu *u, dimse_command *rsp, cp_error *err)
{
    dimse_handler h = { on_rsp, on_rsp_data, u };

    u->have_rsp = false;
    while (!u->have_rsp) {
        const pdu_pdata *pd;
        assoc_ind ind;
        cp_status st = assoc_step(u->a, &ind);

        if (st != CP_OK || assoc_is_closed(u->a) || assoc_get_state(u->a) == ASSOC_STA13)
            return cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                                "association ended while waiting: %s", assoc_detail(u->a));
        if (ind != ASSOC_IND_PDATA)
            continue;
        pd = assoc_pdvs(u->a);
        for (size_t i = 0; pd != NULL && i < pd->count; i++) {
            st = dimse_receiver_feed(&u->rx, &pd->pdvs[i], &h, err);
            if (st != CP_OK) {
                assoc_abort_provider(u->a, PDU_ABORT_INVALID_PARAM);
                return st;
            }
        }
    }
    *rsp = u->rsp;
    return CP_OK;
}

cp_status scu_wait_response_data(scu *u, dimse_command *rsp, cp_buf *data, cp_error *err)
{
    cp_status st;

    cp_buf_reset(data);
    u->rsp_data = data;
    u->rsp_data_over = false;
    st = scu_wait_response(u, rsp, err);
    u->rsp_data = NULL;
    if (st == CP_OK && u->rsp_data_over)
        st = cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "response data set over %u bytes", QR_IDENTIFIER_MAX);
    return st;
}

cp_status scu_cancel(scu *u, uint8_t pc_id, uint16_t message_id, cp_error *err)
{
    dimse_command cmd;
    cp_buf buf = CP_BUF_INIT;
    cp_status st;

    memset(&cmd, 0, sizeof cmd);
    cmd.command_field = DIMSE_C_CANCEL_RQ;
    cmd.data_set_type = DIMSE_NO_DATA_SET;
    cmd.fields = DIMSE_F_RESPONDED_TO;
    cmd.responded_to = message_id;
    st = dimse_encode_command(&cmd, &buf, err);
    if (st == CP_OK)
        st = assoc_send_pdata(u->a, pc_id, true, buf.data, buf.len, true);
    cp_buf_free(&buf);
    return st;
}

cp_status scu_echo(scu *u, uint16_t *status, cp_error *err)
{
    dimse_command cmd, rsp;
    uint8_t pc = scu_context_for(u, SCU_VERIFICATION_UID, NULL);
    cp_status st;

    if (pc == 0)
        return cp_error_set(err, CP_ERR_UNSUPPORTED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "Verification was not accepted");
    memset(&cmd, 0, sizeof cmd);
    cmd.command_field = DIMSE_C_ECHO_RQ;
    cmd.data_set_type = DIMSE_NO_DATA_SET;
    cmd.fields = DIMSE_F_AFFECTED_SOP_CLASS;
    snprintf(cmd.affected_sop_class, sizeof cmd.affected_sop_class, "%s",
             SCU_VERIFICATION_UID);
    st = scu_send_command(u, pc, &cmd, err);
    if (st == CP_OK)
        st = scu_wait_response(u, &rsp, err);
    if (st != CP_OK)
        return st;
    if (rsp.command_field != DIMSE_C_ECHO_RSP || rsp.responded_to != cmd.message_id)
        return cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "unexpected %s to C-ECHO-RQ",
                            dimse_command_name(rsp.command_field));
    *status = (rsp.fields & DIMSE_F_STATUS) ? rsp.status : DIMSE_CANNOT_UNDERSTAND;
    return CP_OK;
}

/* --- C-STORE ------------------------------------------------------------ */

cp_status scu_part10_read(const char *path, scu_part10_info *out, cp_error *err)
{
    dcm_read_options opts = { 0 };
    dcm_source *src = NULL;
    dcm_file *file = NULL;
    cp_status st;

    memset(out, 0, sizeof *out);
    st = dcm_source_open_file(path, &src, err);
    if (st != CP_OK)
        return st;
    /* The meta group is all we need: stop at the data set's first element. */
    opts.stop_before = DCM_TAG(0x0000, 0x0001);
    st = dcm_file_read(src, &opts, &file, err);
    if (st != CP_OK)
        goto done;
    if (file->meta == NULL ||
        dcm_dataset_get_string(file->meta, DCM_TAG(0x0002, 0x0002), out->sop_class,
                               sizeof out->sop_class) != CP_OK ||
        dcm_dataset_get_string(file->meta, DCM_TAG(0x0002, 0x0003), out->sop_instance,
                               sizeof out->sop_instance) != CP_OK) {
        st = cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "not a Part 10 file with SOP class and instance in its meta group");
        goto done;
    }
    snprintf(out->ts, sizeof out->ts, "%s", file->transfer_syntax->uid);
    out->dataset_offset = file->dataset_offset;
    if (!dcm_source_size(src, &out->size))
        st = cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "the file's size is unknown");

done:
    dcm_file_destroy(file);
    dcm_source_destroy(src);
    return st;
}

static bool plain_le(const char *ts)
{
    return strcmp(ts, dcm_ts_explicit_le.uid) == 0 || strcmp(ts, dcm_ts_implicit_le.uid) == 0;
}

static cp_status stream_file(scu *u, uint8_t pc, const char *path,
                             const scu_part10_info *info, cp_error *err)
{
    uint64_t left = info->size - info->dataset_offset;
    uint8_t *chunk = NULL;
    cp_status st = CP_OK;
    FILE *f = fopen(path, "rb");

    if (f == NULL || fseeko(f, (off_t)info->dataset_offset, SEEK_SET) != 0) {
        st = cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "cannot read the file");
        goto done;
    }
    chunk = cp_malloc(QR_STREAM_CHUNK);
    if (chunk == NULL) {
        st = CP_ERR_NOMEM;
        goto done;
    }
    do {
        size_t n = left < QR_STREAM_CHUNK ? (size_t)left : QR_STREAM_CHUNK;

        if (fread(chunk, 1, n, f) != n) {
            st = cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                              "the file shrank while it was sent");
            break;
        }
        left -= n;
        st = scu_send_data(u, pc, chunk, n, left == 0, err);
    } while (st == CP_OK && left > 0);

done:
    cp_free(chunk);
    if (f != NULL)
        fclose(f);
    return st;
}

/* Sends the data set rewritten in ts (Explicit <-> Implicit VR Little Endian). */
static cp_status transcode_file(scu *u, uint8_t pc, const char *path,
                                const scu_part10_info *info, const char *ts, cp_error *err)
{
    cp_buf out = CP_BUF_INIT;
    dcm_sink sink = dcm_sink_to_buf(&out);
    dcm_source *src = NULL;
    dcm_file *file = NULL;
    cp_status st;

    if (info->size > QR_TRANSCODE_MAX)
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "file too large to change its transfer syntax");
    st = dcm_source_open_file(path, &src, err);
    if (st == CP_OK)
        st = dcm_file_read(src, NULL, &file, err);
    if (st == CP_OK)
        st = dcm_write_dataset(file->dataset, dcm_ts_lookup(ts, strlen(ts)), src, &sink, err);
    if (st == CP_OK)
        st = scu_send_data(u, pc, out.data, out.len, true, err);
    dcm_file_destroy(file);
    dcm_source_destroy(src);
    cp_buf_free(&out);
    return st;
}

cp_status scu_store_file(scu *u, const char *path, const char *move_originator_ae,
                         uint16_t move_originator_id, uint16_t *status, cp_error *err)
{
    static const char *const plain[] = { "1.2.840.10008.1.2.1", "1.2.840.10008.1.2" };
    scu_part10_info info;
    dimse_command cmd, rsp;
    const char *ts = NULL;
    uint8_t pc;
    cp_status st;

    *status = 0xFFFF;
    st = scu_part10_read(path, &info, err);
    if (st != CP_OK)
        return st;
    ts = info.ts;
    pc = scu_context_for_ts(u, info.sop_class, info.ts);
    for (size_t i = 0; pc == 0 && plain_le(info.ts) && i < 2; i++) {
        ts = plain[i];
        pc = scu_context_for_ts(u, info.sop_class, ts);
    }
    if (pc == 0)
        return cp_error_set(err, CP_ERR_UNSUPPORTED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "the peer accepted no context for SOP class %s in %s",
                            info.sop_class, info.ts);

    memset(&cmd, 0, sizeof cmd);
    cmd.command_field = DIMSE_C_STORE_RQ;
    cmd.data_set_type = 0x0000;
    cmd.fields = DIMSE_F_AFFECTED_SOP_CLASS | DIMSE_F_AFFECTED_SOP_INSTANCE |
                 DIMSE_F_PRIORITY;
    cmd.priority = DIMSE_PRIORITY_MEDIUM;
    memcpy(cmd.affected_sop_class, info.sop_class, PDU_UID_SIZE);
    memcpy(cmd.affected_sop_instance, info.sop_instance, PDU_UID_SIZE);
    if (move_originator_ae != NULL) {
        cmd.fields |= DIMSE_F_MOVE_ORIGINATOR_AE | DIMSE_F_MOVE_ORIGINATOR_ID;
        snprintf(cmd.move_originator_ae, sizeof cmd.move_originator_ae, "%s",
                 move_originator_ae);
        cmd.move_originator_id = move_originator_id;
    }
    st = scu_send_command(u, pc, &cmd, err);
    if (st == CP_OK && strcmp(ts, info.ts) == 0)
        st = stream_file(u, pc, path, &info, err);
    else if (st == CP_OK)
        st = transcode_file(u, pc, path, &info, ts, err);
    if (st == CP_OK)
        st = scu_wait_response(u, &rsp, err);
    if (st != CP_OK)
        return st;
    if (rsp.command_field != DIMSE_C_STORE_RSP || rsp.responded_to != cmd.message_id)
        return cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "unexpected %s to C-STORE-RQ",
                            dimse_command_name(rsp.command_field));
    *status = (rsp.fields & DIMSE_F_STATUS) ? rsp.status : DIMSE_CANNOT_UNDERSTAND;
    return CP_OK;
}

cp_status scu_release(scu *u, cp_error *err)
{
    cp_status st = assoc_release(u->a);

    if (st != CP_OK)
        cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, "release failed: %s",
                     assoc_detail(u->a));
    return st;
}

void scu_destroy(scu *u)
{
    if (u == NULL)
        return;
    if (u->a != NULL) {
        if (!assoc_is_closed(u->a))
            assoc_abort(u->a);
        assoc_destroy(u->a);
    }
    dimse_receiver_free(&u->rx);
    if (u->wrap_ctx != NULL)
        u->wrap.close(u->wrap_ctx);
    if (u->tcp.fd >= 0)
        close(u->tcp.fd);
    cp_free(u);
}

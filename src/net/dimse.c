/*
 * dimse.c - DIMSE command sets (PS3.7 9.3 and Annex E) in Implicit VR
 * Little Endian, and the gathering of messages from PDVs (PS3.8 Annex E).
 *
 * Encoding writes the elements of group 0000 in ascending tag order with
 * CommandGroupLength (0000,0000) first, as PS3.7 E.1 requires. Decoding
 * reads the group with the DICOM core's pull parser, so that a command set
 * is held to the same limits and length checks as any data set.
 */
#include "net/dimse.h"

#include <string.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "dicom/dict_tags.h"
#include "dicom/io.h"
#include "dicom/parser.h"

/* --- encoding ----------------------------------------------------------- */

static cp_status put_header(cp_buf *out, uint32_t tag, uint32_t len)
{
    uint8_t h[8] = {
        (uint8_t)(tag >> 16), (uint8_t)(tag >> 24), (uint8_t)tag, (uint8_t)(tag >> 8),
        (uint8_t)len, (uint8_t)(len >> 8), (uint8_t)(len >> 16), (uint8_t)(len >> 24),
    };

    return cp_buf_append(out, h, sizeof h);
}

static cp_status put_us(cp_buf *out, uint32_t tag, uint16_t v)
{
    uint8_t b[2] = { (uint8_t)v, (uint8_t)(v >> 8) };
    cp_status st = put_header(out, tag, 2);

    return st == CP_OK ? cp_buf_append(out, b, 2) : st;
}

/* A string value padded to even length: UI with NUL, others with a space. */
static cp_status put_str(cp_buf *out, uint32_t tag, const char *s, size_t max, char pad)
{
    size_t len = strlen(s);
    size_t padded = len + (len & 1u);
    cp_status st;

    if (len > max)
        return CP_ERR_INVALID;
    st = put_header(out, tag, (uint32_t)padded);
    if (st == CP_OK)
        st = cp_buf_append(out, s, len);
    if (st == CP_OK && padded != len)
        st = cp_buf_append_byte(out, (uint8_t)pad);
    return st;
}

static cp_status put_at(cp_buf *out, uint32_t tag, uint32_t v)
{
    uint8_t b[4] = { (uint8_t)(v >> 16), (uint8_t)(v >> 24), (uint8_t)v, (uint8_t)(v >> 8) };
    cp_status st = put_header(out, tag, 4);

    return st == CP_OK ? cp_buf_append(out, b, 4) : st;
}

/* Appends the elements after CommandGroupLength, in ascending order. */
static cp_status put_elements(const dimse_command *c, cp_buf *b)
{
    unsigned f = c->fields;
    cp_status st = CP_OK;

#define PUT(cond, call) \
    do { if (st == CP_OK && (cond)) st = (call); } while (0)
    PUT(f & DIMSE_F_AFFECTED_SOP_CLASS,
        put_str(b, DCM_AffectedSOPClassUID, c->affected_sop_class, 64, '\0'));
    PUT(1, put_us(b, DCM_CommandField, c->command_field));
    PUT(f & DIMSE_F_MESSAGE_ID, put_us(b, DCM_MessageID, c->message_id));
    PUT(f & DIMSE_F_RESPONDED_TO,
        put_us(b, DCM_MessageIDBeingRespondedTo, c->responded_to));
    PUT(f & DIMSE_F_MOVE_DESTINATION,
        put_str(b, DCM_MoveDestination, c->move_destination, 16, ' '));
    PUT(f & DIMSE_F_PRIORITY, put_us(b, DCM_Priority, c->priority));
    PUT(1, put_us(b, DCM_CommandDataSetType, c->data_set_type));
    PUT(f & DIMSE_F_STATUS, put_us(b, DCM_Status, c->status));
    PUT(f & DIMSE_F_OFFENDING_ELEMENT,
        put_at(b, DCM_OffendingElement, c->offending_element));
    PUT(f & DIMSE_F_ERROR_COMMENT, put_str(b, DCM_ErrorComment, c->error_comment, 64, ' '));
    PUT(f & DIMSE_F_AFFECTED_SOP_INSTANCE,
        put_str(b, DCM_AffectedSOPInstanceUID, c->affected_sop_instance, 64, '\0'));
    PUT(f & DIMSE_F_REMAINING, put_us(b, DCM_NumberOfRemainingSuboperations, c->remaining));
    PUT(f & DIMSE_F_COMPLETED, put_us(b, DCM_NumberOfCompletedSuboperations, c->completed));
    PUT(f & DIMSE_F_FAILED, put_us(b, DCM_NumberOfFailedSuboperations, c->failed));
    PUT(f & DIMSE_F_WARNING, put_us(b, DCM_NumberOfWarningSuboperations, c->warning));
    PUT(f & DIMSE_F_MOVE_ORIGINATOR_AE,
        put_str(b, DCM_MoveOriginatorApplicationEntityTitle, c->move_originator_ae, 16, ' '));
    PUT(f & DIMSE_F_MOVE_ORIGINATOR_ID,
        put_us(b, DCM_MoveOriginatorMessageID, c->move_originator_id));
#undef PUT
    return st;
}

cp_status dimse_encode_command(const dimse_command *cmd, cp_buf *out, cp_error *err)
{
    cp_buf body = CP_BUF_INIT;
    uint8_t gl[4];
    cp_status st;

    st = put_elements(cmd, &body);
    if (st == CP_ERR_INVALID) {
        cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                     "a string of the command set is too long for its VR");
        goto done;
    }
    if (st != CP_OK)
        goto done;

    gl[0] = (uint8_t)body.len;
    gl[1] = (uint8_t)(body.len >> 8);
    gl[2] = (uint8_t)(body.len >> 16);
    gl[3] = (uint8_t)(body.len >> 24);
    st = put_header(out, DCM_CommandGroupLength, 4);
    if (st == CP_OK)
        st = cp_buf_append(out, gl, 4);
    if (st == CP_OK)
        st = cp_buf_append(out, body.data, body.len);

done:
    cp_buf_free(&body);
    return st;
}

/* --- decoding ----------------------------------------------------------- */

/* Copies a string value without its padding (leading and trailing spaces, NULs). */
static void copy_trimmed(char *dst, size_t size, const uint8_t *v, size_t len)
{
    while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\0'))
        len--;
    while (len > 0 && v[0] == ' ') {
        v++;
        len--;
    }
    if (len >= size)
        len = size - 1;
    memcpy(dst, v, len);
    dst[len] = '\0';
}

static uint16_t get_us(const uint8_t *v)
{
    return (uint16_t)(v[0] | v[1] << 8);
}

/* Stores one element of the command set; unknown ones are ignored. */
static cp_status store_element(dimse_command *c, uint32_t tag, const uint8_t *v, size_t len)
{
    struct { uint32_t tag; unsigned flag; uint16_t *dst; } us[] = {
        { DCM_CommandField, 0, &c->command_field },
        { DCM_MessageID, DIMSE_F_MESSAGE_ID, &c->message_id },
        { DCM_MessageIDBeingRespondedTo, DIMSE_F_RESPONDED_TO, &c->responded_to },
        { DCM_Priority, DIMSE_F_PRIORITY, &c->priority },
        { DCM_CommandDataSetType, 0, &c->data_set_type },
        { DCM_Status, DIMSE_F_STATUS, &c->status },
        { DCM_NumberOfRemainingSuboperations, DIMSE_F_REMAINING, &c->remaining },
        { DCM_NumberOfCompletedSuboperations, DIMSE_F_COMPLETED, &c->completed },
        { DCM_NumberOfFailedSuboperations, DIMSE_F_FAILED, &c->failed },
        { DCM_NumberOfWarningSuboperations, DIMSE_F_WARNING, &c->warning },
        { DCM_MoveOriginatorMessageID, DIMSE_F_MOVE_ORIGINATOR_ID, &c->move_originator_id },
    };
    struct { uint32_t tag; unsigned flag; char *dst; size_t size; } str[] = {
        { DCM_AffectedSOPClassUID, DIMSE_F_AFFECTED_SOP_CLASS, c->affected_sop_class,
          sizeof c->affected_sop_class },
        { DCM_AffectedSOPInstanceUID, DIMSE_F_AFFECTED_SOP_INSTANCE,
          c->affected_sop_instance, sizeof c->affected_sop_instance },
        { DCM_MoveDestination, DIMSE_F_MOVE_DESTINATION, c->move_destination,
          sizeof c->move_destination },
        { DCM_MoveOriginatorApplicationEntityTitle, DIMSE_F_MOVE_ORIGINATOR_AE,
          c->move_originator_ae, sizeof c->move_originator_ae },
        { DCM_ErrorComment, DIMSE_F_ERROR_COMMENT, c->error_comment,
          sizeof c->error_comment },
    };

    for (size_t i = 0; i < sizeof us / sizeof us[0]; i++) {
        if (us[i].tag != tag)
            continue;
        if (len != 2)
            return CP_ERR_MALFORMED;
        *us[i].dst = get_us(v);
        c->fields |= us[i].flag;
        return CP_OK;
    }
    for (size_t i = 0; i < sizeof str / sizeof str[0]; i++) {
        if (str[i].tag != tag)
            continue;
        if (len >= str[i].size + 1)
            return CP_ERR_MALFORMED;
        copy_trimmed(str[i].dst, str[i].size, v, len);
        c->fields |= str[i].flag;
        return CP_OK;
    }
    if (tag == DCM_OffendingElement && len >= 4) {
        c->offending_element = (uint32_t)get_us(v) << 16 | get_us(v + 2);
        c->fields |= DIMSE_F_OFFENDING_ELEMENT;
    }
    return CP_OK;
}

/* Values of the elements we keep are short: a UID, an LO or a US. */
#define DIMSE_VALUE_MAX 80

static cp_status decode_events(dcm_parser *p, dimse_command *cmd, bool *has_field,
                               bool *has_type, cp_error *err)
{
    uint8_t value[DIMSE_VALUE_MAX];
    dcm_event ev;
    cp_status st;

    for (;;) {
        size_t got = 0;

        st = dcm_parser_next(p, &ev, err);
        if (st != CP_OK)
            return st;
        if (ev.type == DCM_EVENT_END)
            return CP_OK;
        if (ev.type != DCM_EVENT_ELEMENT || ev.depth != 0)
            continue;
        if ((ev.tag >> 16) != 0x0000)
            return cp_error_set(err, CP_ERR_MALFORMED, (int64_t)ev.header_offset, ev.tag,
                                "element outside group 0000 in a command set");
        if (ev.length > sizeof value)
            continue;
        st = dcm_parser_read_value(p, value, ev.length, &got, err);
        if (st != CP_OK)
            return st;
        if (store_element(cmd, ev.tag, value, got) != CP_OK)
            return cp_error_set(err, CP_ERR_MALFORMED, (int64_t)ev.header_offset, ev.tag,
                                "bad value length %zu", got);
        if (ev.tag == DCM_CommandField)
            *has_field = true;
        if (ev.tag == DCM_CommandDataSetType)
            *has_type = true;
    }
}

cp_status dimse_decode_command(const uint8_t *data, size_t len, dimse_command *cmd,
                               cp_error *err)
{
    dcm_parser_options opts = { false, false, 0, false };
    dcm_source *src = NULL;
    dcm_parser *p = NULL;
    bool has_field = false, has_type = false;
    cp_status st;

    memset(cmd, 0, sizeof *cmd);
    cmd->data_set_type = DIMSE_NO_DATA_SET;
    if (len > DIMSE_COMMAND_MAX)
        return cp_error_set(err, CP_ERR_LIMIT, 0, CP_ERROR_NO_TAG,
                            "command set of %zu bytes", len);
    src = dcm_source_from_memory(data, len);
    if (src == NULL)
        return CP_ERR_NOMEM;
    st = dcm_parser_create(src, &opts, &p);
    if (st != CP_OK)
        goto done;

    st = decode_events(p, cmd, &has_field, &has_type, err);
    if (st != CP_OK) {
        if (st != CP_ERR_NOMEM)
            st = CP_ERR_MALFORMED;
        goto done;
    }
    if (!has_field || !has_type)
        st = cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET,
                          has_field ? DCM_CommandDataSetType : DCM_CommandField,
                          "command set without %s",
                          has_field ? "CommandDataSetType" : "CommandField");

done:
    dcm_parser_destroy(p);
    dcm_source_destroy(src);
    return st;
}

const char *dimse_command_name(uint16_t field)
{
    switch (field) {
    case DIMSE_C_STORE_RQ: return "C-STORE-RQ";
    case DIMSE_C_STORE_RSP: return "C-STORE-RSP";
    case DIMSE_C_GET_RQ: return "C-GET-RQ";
    case DIMSE_C_GET_RSP: return "C-GET-RSP";
    case DIMSE_C_FIND_RQ: return "C-FIND-RQ";
    case DIMSE_C_FIND_RSP: return "C-FIND-RSP";
    case DIMSE_C_MOVE_RQ: return "C-MOVE-RQ";
    case DIMSE_C_MOVE_RSP: return "C-MOVE-RSP";
    case DIMSE_C_ECHO_RQ: return "C-ECHO-RQ";
    case DIMSE_C_ECHO_RSP: return "C-ECHO-RSP";
    case DIMSE_C_CANCEL_RQ: return "C-CANCEL-RQ";
    default: return "other";
    }
}

/* --- gathering messages ------------------------------------------------- */

void dimse_receiver_init(dimse_receiver *r)
{
    memset(r, 0, sizeof *r);
    cp_buf_init(&r->command);
}

void dimse_receiver_free(dimse_receiver *r)
{
    cp_buf_free(&r->command);
}

bool dimse_receiver_idle(const dimse_receiver *r)
{
    return !r->in_command && !r->in_data;
}

static cp_status feed_command(dimse_receiver *r, const pdu_pdv *pdv, const dimse_handler *h,
                              cp_error *err)
{
    dimse_command cmd;
    cp_status st;

    if (r->in_data)
        return cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "command fragment inside a data set");
    if (!r->in_command) {
        r->in_command = true;
        r->pc_id = pdv->pc_id;
        cp_buf_reset(&r->command);
    } else if (pdv->pc_id != r->pc_id) {
        return cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "command fragments on contexts %u and %u", r->pc_id,
                            pdv->pc_id);
    }
    if (pdv->len > DIMSE_COMMAND_MAX - r->command.len)
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "command set over %u bytes", DIMSE_COMMAND_MAX);
    st = cp_buf_append(&r->command, pdv->data, pdv->len);
    if (st != CP_OK || !pdv->last)
        return st;

    r->in_command = false;
    st = dimse_decode_command(r->command.data, r->command.len, &cmd, err);
    cp_buf_reset(&r->command);
    if (st != CP_OK)
        return st;
    r->data_expected = dimse_has_data_set(&cmd);
    r->in_data = r->data_expected;
    r->data_bytes = 0;
    return h->command(h->ctx, r->pc_id, &cmd);
}

cp_status dimse_receiver_feed(dimse_receiver *r, const pdu_pdv *pdv, const dimse_handler *h,
                              cp_error *err)
{
    if (pdv->command)
        return feed_command(r, pdv, h, err);

    if (!r->in_data)
        return cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "data set fragment that no command announced");
    if (pdv->pc_id != r->pc_id)
        return cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "data set on context %u for a command on %u", pdv->pc_id,
                            r->pc_id);
    r->data_bytes += pdv->len;
    if (pdv->last)
        r->in_data = false;
    return h->data(h->ctx, pdv->pc_id, pdv->data, pdv->len, pdv->last);
}

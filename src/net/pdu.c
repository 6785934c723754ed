/*
 * pdu.c - decoding and encoding of the DICOM upper layer PDUs (PS3.8
 * section 9.3, with the user information sub-items of PS3.8 Annex D and
 * PS3.7 Annex D.3.3).
 *
 * Every PDU starts with a 6-byte header; association PDUs then hold fixed
 * fields and a list of items, each `type, reserved, 2-byte length, value`:
 *
 *   A-ASSOCIATE-RQ/AC  01/02 00 len32 | version16 00 00 | called AE[16]
 *                      calling AE[16] | reserved[32] | items...
 *     10H application context    value: UID
 *     20H presentation context   id 00 00 00 | 30H abstract syntax,
 *                                40H transfer syntax...          (RQ)
 *     21H presentation context   id 00 result 00 | 40H transfer syntax (AC)
 *     50H user information       sub-items 51H-59H
 *   A-ASSOCIATE-RJ     03 00 00000004 | 00 result source reason
 *   P-DATA-TF          04 00 len32 | { len32 | pc-id | control | data }...
 *   A-RELEASE-RQ/RP    05/06 00 00000004 | 00 00 00 00
 *   A-ABORT            07 00 00000004 | 00 00 source reason
 *
 * All integers are big-endian. The decoder walks items with one cursor per
 * nesting level and checks each declared length against the bytes its
 * parent has left before reading the value. Encoders write each item with
 * a zero length and patch it once the value is written, so lengths are
 * exact by construction.
 */
#include "net/pdu.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/limits.h"

/* Called/calling AE, then 32 reserved bytes, after version and reserved. */
#define ASSOC_FIXED_LEN 68
#define ITEM_HEADER_LEN 4
#define PDV_HEADER_LEN  6       /* item length, context id, control header */
#define ITEM_LENGTH_MAX 0xFFFFu

enum {
    ITEM_APP_CONTEXT = 0x10,
    ITEM_PC_RQ = 0x20,
    ITEM_PC_AC = 0x21,
    ITEM_ABSTRACT_SYNTAX = 0x30,
    ITEM_TRANSFER_SYNTAX = 0x40,
    ITEM_USER_INFO = 0x50,
    SUB_MAX_LENGTH = 0x51,
    SUB_IMPL_CLASS = 0x52,
    SUB_ASYNC_WINDOW = 0x53,
    SUB_ROLE = 0x54,
    SUB_IMPL_VERSION = 0x55,
    SUB_EXT_NEG = 0x56,
    SUB_COMMON_EXT_NEG = 0x57,
    SUB_IDENTITY_RQ = 0x58,
    SUB_IDENTITY_AC = 0x59
};

/* ---- shared checks ------------------------------------------------------- */

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static bool ae_char_ok(uint8_t c)
{
    return c >= 0x20 && c < 0x7F && c != '\\';
}

bool pdu_ae_is_valid(const char *ae, size_t len)
{
    bool significant = false;

    if (ae == NULL || len > PDU_AE_SIZE - 1)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!ae_char_ok((uint8_t)ae[i]))
            return false;
        if (ae[i] != ' ')
            significant = true;
    }
    return significant;
}

/*
 * Checks a UID as `len` bytes off the wire or from a caller: trailing NUL
 * and space padding are dropped (*trimmed gets the length left), the rest
 * must be 1-64 digits and dots. The full syntax of PS3.5 9.1 (no leading
 * zeros, no empty component) is left to the association layer: a peer's
 * slightly wrong private UID should not cost it the association. Returns
 * NULL when valid, else what is wrong.
 */
static const char *uid_problem(const uint8_t *uid, size_t len, size_t *trimmed)
{
    while (len > 0 && (uid[len - 1] == '\0' || uid[len - 1] == ' '))
        len--;
    *trimmed = len;
    if (len == 0)
        return "empty UID";
    if (len > PDU_UID_SIZE - 1)
        return "UID longer than 64 characters";
    for (size_t i = 0; i < len; i++) {
        if ((uid[i] < '0' || uid[i] > '9') && uid[i] != '.')
            return "UID holds a character other than a digit or a dot";
    }
    return NULL;
}

/* Implementation Version Name: 0-16 printable characters after trimming. */
static const char *version_problem(const uint8_t *name, size_t len, size_t *trimmed)
{
    while (len > 0 && (name[len - 1] == '\0' || name[len - 1] == ' '))
        len--;
    *trimmed = len;
    if (len > PDU_VERSION_NAME_SIZE - 1)
        return "implementation version name longer than 16 characters";
    for (size_t i = 0; i < len; i++) {
        if (name[i] < 0x20 || name[i] >= 0x7F)
            return "implementation version name holds a control character";
    }
    return NULL;
}

static bool reject_valid(uint8_t result, uint8_t source, uint8_t reason)
{
    if (result != PDU_REJECT_PERMANENT && result != PDU_REJECT_TRANSIENT)
        return false;
    switch (source) {
    case PDU_REJECT_SOURCE_USER:
        return reason >= 1 && reason <= 10;
    case PDU_REJECT_SOURCE_ACSE:
        return reason >= 1 && reason <= 2;
    case PDU_REJECT_SOURCE_PRESENTATION:
        return reason <= 7;
    default:
        return false;
    }
}

/* The reason is significant only from the service provider (PS3.8 9.3.8). */
static bool abort_valid(uint8_t source, uint8_t reason)
{
    if (source > PDU_ABORT_SOURCE_PROVIDER)
        return false;
    return source != PDU_ABORT_SOURCE_PROVIDER || reason <= PDU_ABORT_INVALID_PARAM;
}

pdu_abort_reason pdu_abort_reason_for(cp_status status)
{
    if (status == CP_OK)
        return PDU_ABORT_NOT_SPECIFIED;
    if (status == CP_ERR_UNSUPPORTED)
        return PDU_ABORT_UNRECOGNIZED_PDU;
    return PDU_ABORT_INVALID_PARAM;
}

/* ---- decoding ------------------------------------------------------------ */

/* What one decoding needs: the PDU start (for offsets) and where to report. */
typedef struct decoder {
    const uint8_t *base;
    pdu_abort_reason *reason;
    cp_error *err;
} decoder;

/* One item or sub-item: its type, the byte after it, and its value. */
typedef struct item {
    uint8_t type;
    uint8_t second;             /* reserved, or the version of a 57H sub-item */
    const uint8_t *at;          /* the item header */
    const uint8_t *value;
    size_t len;
} item;

static cp_status fail(decoder *d, cp_status status, pdu_abort_reason reason,
                      const uint8_t *at, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static cp_status fail(decoder *d, cp_status status, pdu_abort_reason reason,
                      const uint8_t *at, const char *fmt, ...)
{
    char detail[CP_ERROR_DETAIL_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);

    if (d->reason != NULL)
        *d->reason = reason;
    return cp_error_set(d->err, status, at - d->base, CP_ERROR_NO_TAG, "%s", detail);
}

static cp_status invalid(decoder *d, const uint8_t *at, const char *what)
{
    return fail(d, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM, at, "%s", what);
}

static cp_status nomem(decoder *d, const uint8_t *at)
{
    return fail(d, CP_ERR_NOMEM, PDU_ABORT_NOT_SPECIFIED, at, "out of memory");
}

/*
 * Reads the item at *pos, which must lie wholly before `end`, and moves
 * *pos past it.
 */
static cp_status next_item(decoder *d, const uint8_t **pos, const uint8_t *end, item *it)
{
    const uint8_t *p = *pos;
    size_t left = (size_t)(end - p);

    if (left < ITEM_HEADER_LEN)
        return fail(d, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM, p,
                    "item header needs 4 bytes, %zu left in its parent", left);

    it->type = p[0];
    it->second = p[1];
    it->at = p;
    it->len = get16(p + 2);
    it->value = p + ITEM_HEADER_LEN;
    if (it->len > left - ITEM_HEADER_LEN)
        return fail(d, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM, p,
                    "item %02XH length %zu exceeds the %zu bytes left in its parent",
                    it->type, it->len, left - ITEM_HEADER_LEN);
    *pos = it->value + it->len;
    return CP_OK;
}

static cp_status take_uid(decoder *d, const uint8_t *at, const uint8_t *v, size_t len,
                          pdu_uid *out, const char *what)
{
    size_t n;
    const char *problem = uid_problem(v, len, &n);

    if (problem != NULL)
        return fail(d, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM, at, "%s: %s",
                    what, problem);
    memcpy(out->value, v, n);
    out->value[n] = '\0';
    return CP_OK;
}

/*
 * Makes room for element `count` of an array whose capacity is the
 * smallest power of two not below count, and zeroes it. NULL on OOM, with
 * the array untouched.
 */
static void *grow(void *arr, size_t count, size_t size)
{
    uint8_t *bigger = arr;

    if (count == 0 || (count & (count - 1)) == 0) {
        bigger = cp_realloc(arr, (count == 0 ? 1 : count * 2) * size);
        if (bigger == NULL)
            return NULL;
    }
    memset(bigger + count * size, 0, size);
    return bigger;
}

/* Checks the count limit first: 129 contexts would otherwise repeat an ID. */
static cp_status check_context_id(decoder *d, const pdu_assoc *a, const uint8_t *at,
                                  uint8_t id)
{
    if (a->pc_count >= PDU_CONTEXTS_MAX)
        return fail(d, CP_ERR_LIMIT, PDU_ABORT_INVALID_PARAM, at,
                    "more than %d presentation contexts", PDU_CONTEXTS_MAX);
    if (id % 2 == 0)
        return fail(d, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM, at,
                    "presentation context ID %u is not odd", id);
    for (size_t i = 0; i < a->pc_count; i++) {
        if (a->pcs[i].id == id)
            return fail(d, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM, at,
                        "presentation context ID %u appears twice", id);
    }
    return CP_OK;
}

/* Appends a zeroed presentation context (check_context_id came first); NULL on OOM. */
static pdu_pres_ctx *add_context(pdu_assoc *a)
{
    pdu_pres_ctx *pcs = grow(a->pcs, a->pc_count, sizeof *pcs);

    if (pcs == NULL)
        return NULL;
    a->pcs = pcs;
    return &pcs[a->pc_count++];
}

static cp_status add_ts(decoder *d, pdu_pres_ctx *pc, const item *it)
{
    pdu_uid *ts;

    if (pc->ts_count >= PDU_TS_PER_CONTEXT_MAX)
        return fail(d, CP_ERR_LIMIT, PDU_ABORT_INVALID_PARAM, it->at,
                    "presentation context %u proposes more than %d transfer syntaxes",
                    pc->id, PDU_TS_PER_CONTEXT_MAX);
    ts = grow(pc->ts, pc->ts_count, sizeof *ts);
    if (ts == NULL)
        return nomem(d, it->at);
    pc->ts = ts;
    pc->ts_count++;
    return take_uid(d, it->at, it->value, it->len, &ts[pc->ts_count - 1],
                    "transfer syntax");
}

/* Item 20H: id, 3 reserved bytes, one abstract syntax, transfer syntaxes. */
static cp_status decode_pc_rq(decoder *d, pdu_assoc *a, const item *pci)
{
    const uint8_t *pos = pci->value + 4;
    const uint8_t *end = pci->value + pci->len;
    bool have_abstract = false;
    pdu_pres_ctx *pc;
    item it;
    cp_status st;

    if (pci->len < 4)
        return invalid(d, pci->at, "presentation context item shorter than 4 bytes");
    if ((st = check_context_id(d, a, pci->value, pci->value[0])) != CP_OK)
        return st;
    if ((pc = add_context(a)) == NULL)
        return nomem(d, pci->at);
    pc->id = pci->value[0];

    while (pos < end) {
        if ((st = next_item(d, &pos, end, &it)) != CP_OK)
            return st;
        if (it.type == ITEM_ABSTRACT_SYNTAX) {
            if (have_abstract)
                return fail(d, CP_ERR_MALFORMED, PDU_ABORT_UNEXPECTED_PARAM, it.at,
                            "presentation context %u has two abstract syntaxes", pc->id);
            have_abstract = true;
            st = take_uid(d, it.at, it.value, it.len, &pc->abstract_syntax,
                          "abstract syntax");
        } else if (it.type == ITEM_TRANSFER_SYNTAX) {
            st = add_ts(d, pc, &it);
        } else {
            st = fail(d, CP_ERR_MALFORMED, PDU_ABORT_UNRECOGNIZED_PARAM, it.at,
                      "unknown sub-item %02XH in presentation context %u",
                      it.type, pc->id);
        }
        if (st != CP_OK)
            return st;
    }

    if (!have_abstract)
        return fail(d, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM, pci->at,
                    "presentation context %u has no abstract syntax", pc->id);
    if (pc->ts_count == 0)
        return fail(d, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM, pci->at,
                    "presentation context %u proposes no transfer syntax", pc->id);
    return CP_OK;
}

/*
 * Item 21H: id, reserved, result, reserved, one transfer syntax. When the
 * context is not accepted, the transfer syntax is not significant and must
 * not be tested (PS3.8 Table 9-18): it is kept only when it reads as a UID.
 */
static cp_status decode_pc_ac(decoder *d, pdu_assoc *a, const item *pci)
{
    const uint8_t *pos = pci->value + 4;
    const uint8_t *end = pci->value + pci->len;
    bool have_ts = false;
    pdu_pres_ctx *pc;
    item it;
    cp_status st;

    if (pci->len < 4)
        return invalid(d, pci->at, "presentation context item shorter than 4 bytes");
    if ((st = check_context_id(d, a, pci->value, pci->value[0])) != CP_OK)
        return st;
    if (pci->value[2] > PDU_PC_TRANSFER_SYNTAXES_NOT_SUPPORTED)
        return fail(d, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM, pci->value + 2,
                    "presentation context %u has result %u", pci->value[0],
                    pci->value[2]);
    if ((pc = add_context(a)) == NULL)
        return nomem(d, pci->at);
    pc->id = pci->value[0];
    pc->result = pci->value[2];

    while (pos < end) {
        size_t n;

        if ((st = next_item(d, &pos, end, &it)) != CP_OK)
            return st;
        if (it.type != ITEM_TRANSFER_SYNTAX)
            return fail(d, CP_ERR_MALFORMED,
                        it.type == ITEM_ABSTRACT_SYNTAX ? PDU_ABORT_UNEXPECTED_PARAM
                                                        : PDU_ABORT_UNRECOGNIZED_PARAM,
                        it.at, "sub-item %02XH in -AC presentation context %u",
                        it.type, pc->id);
        if (have_ts)
            return fail(d, CP_ERR_MALFORMED, PDU_ABORT_UNEXPECTED_PARAM, it.at,
                        "presentation context %u has two transfer syntaxes", pc->id);
        have_ts = true;
        if (pc->result != PDU_PC_ACCEPTANCE && uid_problem(it.value, it.len, &n) != NULL)
            continue;
        if ((st = add_ts(d, pc, &it)) != CP_OK)
            return st;
    }

    if (pc->result == PDU_PC_ACCEPTANCE && !have_ts)
        return fail(d, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM, pci->at,
                    "accepted presentation context %u has no transfer syntax", pc->id);
    return CP_OK;
}

/* Reads a 2-byte length and that many bytes, within [*pos, end). */
static cp_status take_field(decoder *d, const uint8_t **pos, const uint8_t *end,
                            const uint8_t **value, size_t *len, const char *what)
{
    const uint8_t *p = *pos;

    if (end - p < 2)
        return fail(d, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM, p,
                    "%s length runs past its sub-item", what);
    *len = get16(p);
    if (*len > (size_t)(end - p - 2))
        return fail(d, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM, p,
                    "%s length %zu exceeds the %zu bytes left in its sub-item",
                    what, *len, (size_t)(end - p - 2));
    *value = p + 2;
    *pos = p + 2 + *len;
    return CP_OK;
}

static cp_status take_uid_field(decoder *d, const uint8_t **pos, const uint8_t *end,
                                pdu_uid *out, const char *what)
{
    const uint8_t *at = *pos;
    const uint8_t *v = NULL;
    size_t len = 0;
    cp_status st = take_field(d, pos, end, &v, &len, what);

    if (st != CP_OK)
        return st;
    return take_uid(d, at, v, len, out, what);
}

static cp_status expect_end(decoder *d, const uint8_t *pos, const item *it)
{
    if (pos != it->value + it->len)
        return fail(d, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM, pos,
                    "sub-item %02XH has %zu bytes after its fields", it->type,
                    (size_t)(it->value + it->len - pos));
    return CP_OK;
}

/* 54H: UID length, SOP class UID, SCU role, SCP role. */
static cp_status decode_role(decoder *d, pdu_user_info *u, const item *it)
{
    const uint8_t *pos = it->value;
    const uint8_t *end = it->value + it->len;
    pdu_role *roles = grow(u->roles, u->role_count, sizeof *roles);
    pdu_role *r;
    cp_status st;

    if (roles == NULL)
        return nomem(d, it->at);
    u->roles = roles;
    r = &roles[u->role_count++];
    if ((st = take_uid_field(d, &pos, end, &r->sop_class, "role selection SOP class"))
        != CP_OK)
        return st;
    if (end - pos < 2)
        return invalid(d, pos, "role selection sub-item ends before its roles");
    r->scu_role = pos[0];
    r->scp_role = pos[1];
    if (r->scu_role > 1 || r->scp_role > 1)
        return invalid(d, pos, "role selection value other than 0 or 1");
    return expect_end(d, pos + 2, it);
}

/* 56H: UID length, SOP class UID, service-class application information. */
static cp_status decode_ext_neg(decoder *d, pdu_user_info *u, const item *it)
{
    const uint8_t *pos = it->value;
    const uint8_t *end = it->value + it->len;
    pdu_ext_neg *ext = grow(u->ext_neg, u->ext_neg_count, sizeof *ext);
    pdu_ext_neg *e;
    cp_status st;

    if (ext == NULL)
        return nomem(d, it->at);
    u->ext_neg = ext;
    e = &ext[u->ext_neg_count++];
    st = take_uid_field(d, &pos, end, &e->sop_class, "extended negotiation SOP class");
    if (st != CP_OK)
        return st;
    e->info = pos;
    e->info_len = (size_t)(end - pos);
    return CP_OK;
}

/*
 * 57H: SOP class UID, service class UID, and a list of related general SOP
 * class UIDs, each with its 2-byte length, in a field with its own length.
 */
static cp_status decode_common_ext(decoder *d, pdu_user_info *u, const item *it)
{
    const uint8_t *pos = it->value;
    const uint8_t *end = it->value + it->len;
    const uint8_t *list, *list_end;
    size_t list_len = 0;
    pdu_common_ext_neg *all, *c;
    cp_status st;

    all = grow(u->common_ext_neg, u->common_ext_neg_count, sizeof *all);
    if (all == NULL)
        return nomem(d, it->at);
    u->common_ext_neg = all;
    c = &all[u->common_ext_neg_count++];
    c->version = it->second;
    if ((st = take_uid_field(d, &pos, end, &c->sop_class, "common extended SOP class"))
            != CP_OK ||
        (st = take_uid_field(d, &pos, end, &c->service_class,
                             "common extended service class")) != CP_OK ||
        (st = take_field(d, &pos, end, &list, &list_len, "related SOP class list"))
            != CP_OK ||
        (st = expect_end(d, pos, it)) != CP_OK)
        return st;

    list_end = list + list_len;
    while (list < list_end) {
        pdu_uid *related;

        if (c->related_count >= PDU_RELATED_CLASSES_MAX)
            return fail(d, CP_ERR_LIMIT, PDU_ABORT_INVALID_PARAM, list,
                        "more than %d related general SOP classes",
                        PDU_RELATED_CLASSES_MAX);
        related = grow(c->related, c->related_count, sizeof *related);
        if (related == NULL)
            return nomem(d, list);
        c->related = related;
        st = take_uid_field(d, &list, list_end, &related[c->related_count++],
                            "related general SOP class");
        if (st != CP_OK)
            return st;
    }
    return CP_OK;
}

/* 58H: type, positive response requested, primary field, secondary field. */
static cp_status decode_identity_rq(decoder *d, pdu_user_info *u, const item *it)
{
    const uint8_t *pos = it->value + 2;
    const uint8_t *end = it->value + it->len;
    pdu_identity_rq *id = &u->identity_rq;
    cp_status st;

    if (it->len < 2)
        return invalid(d, it->at, "user identity sub-item shorter than 2 bytes");
    id->type = it->value[0];
    id->response_requested = it->value[1] != 0;
    if ((st = take_field(d, &pos, end, &id->primary, &id->primary_len,
                         "user identity primary field")) != CP_OK ||
        (st = take_field(d, &pos, end, &id->secondary, &id->secondary_len,
                         "user identity secondary field")) != CP_OK)
        return st;
    if (id->primary_len > PDU_USER_IDENTITY_MAX || id->secondary_len > PDU_USER_IDENTITY_MAX)
        return fail(d, CP_ERR_LIMIT, PDU_ABORT_INVALID_PARAM, it->at,
                    "user identity field longer than %d bytes", PDU_USER_IDENTITY_MAX);
    return expect_end(d, pos, it);
}

/* 59H: the server response with its 2-byte length. */
static cp_status decode_identity_ac(decoder *d, pdu_user_info *u, const item *it)
{
    const uint8_t *pos = it->value;
    cp_status st = take_field(d, &pos, it->value + it->len, &u->identity_response,
                              &u->identity_response_len, "user identity server response");

    if (st != CP_OK)
        return st;
    if (u->identity_response_len > PDU_USER_IDENTITY_MAX)
        return fail(d, CP_ERR_LIMIT, PDU_ABORT_INVALID_PARAM, it->at,
                    "user identity response longer than %d bytes",
                    PDU_USER_IDENTITY_MAX);
    return expect_end(d, pos, it);
}

static cp_status decode_fixed_sub(decoder *d, pdu_user_info *u, const item *it)
{
    size_t n;
    const char *problem;

    switch (it->type) {
    case SUB_MAX_LENGTH:
        if (it->len != 4)
            return invalid(d, it->at, "maximum length sub-item is not 4 bytes long");
        u->has_max_length = true;
        u->max_length = get32(it->value);
        return CP_OK;
    case SUB_ASYNC_WINDOW:
        if (it->len != 4)
            return invalid(d, it->at, "asynchronous operations sub-item is not 4 bytes");
        u->has_async_window = true;
        u->max_ops_invoked = get16(it->value);
        u->max_ops_performed = get16(it->value + 2);
        return CP_OK;
    case SUB_IMPL_CLASS:
        return take_uid(d, it->at, it->value, it->len, &u->impl_class_uid,
                        "implementation class UID");
    default:                    /* SUB_IMPL_VERSION */
        problem = version_problem(it->value, it->len, &n);
        if (problem != NULL)
            return invalid(d, it->at, problem);
        memcpy(u->impl_version, it->value, n);
        u->impl_version[n] = '\0';
        return CP_OK;
    }
}

/*
 * Item 50H. Sub-items of unknown type are skipped (PS3.7 D.3.3: a receiver
 * ignores what it does not support); single ones may not repeat.
 */
static cp_status decode_user_info(decoder *d, pdu_user_info *u, const item *ui)
{
    const uint8_t *pos = ui->value;
    const uint8_t *end = ui->value + ui->len;
    uint32_t seen = 0;
    size_t count = 0;
    item it = { 0 };
    cp_status st;

    while (pos < end) {
        if ((st = next_item(d, &pos, end, &it)) != CP_OK)
            return st;
        if (++count > PDU_USER_ITEMS_MAX)
            return fail(d, CP_ERR_LIMIT, PDU_ABORT_INVALID_PARAM, it.at,
                        "more than %d user information sub-items", PDU_USER_ITEMS_MAX);

        switch (it.type) {
        case SUB_MAX_LENGTH:
        case SUB_IMPL_CLASS:
        case SUB_ASYNC_WINDOW:
        case SUB_IMPL_VERSION:
        case SUB_IDENTITY_RQ:
        case SUB_IDENTITY_AC:
            if (seen & (1u << (it.type - SUB_MAX_LENGTH)))
                return fail(d, CP_ERR_MALFORMED, PDU_ABORT_UNEXPECTED_PARAM, it.at,
                            "user information sub-item %02XH appears twice", it.type);
            seen |= 1u << (it.type - SUB_MAX_LENGTH);
            break;
        default:
            break;
        }

        switch (it.type) {
        case SUB_ROLE:
            st = decode_role(d, u, &it);
            break;
        case SUB_EXT_NEG:
            st = decode_ext_neg(d, u, &it);
            break;
        case SUB_COMMON_EXT_NEG:
            st = decode_common_ext(d, u, &it);
            break;
        case SUB_IDENTITY_RQ:
            u->has_identity_rq = true;
            st = decode_identity_rq(d, u, &it);
            break;
        case SUB_IDENTITY_AC:
            u->has_identity_ac = true;
            st = decode_identity_ac(d, u, &it);
            break;
        case SUB_MAX_LENGTH:
        case SUB_IMPL_CLASS:
        case SUB_ASYNC_WINDOW:
        case SUB_IMPL_VERSION:
            st = decode_fixed_sub(d, u, &it);
            break;
        default:
            st = CP_OK;
            break;
        }
        if (st != CP_OK)
            return st;
    }
    return CP_OK;
}

static cp_status decode_ae(decoder *d, const uint8_t *field, char *out, const char *what)
{
    size_t start = 0;
    size_t end = 16;

    if (!pdu_ae_is_valid((const char *)field, 16))
        return fail(d, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM, field,
                    "%s AE title is empty or holds a backslash or control character",
                    what);
    while (field[start] == ' ')
        start++;
    while (field[end - 1] == ' ')
        end--;
    memcpy(out, field + start, end - start);
    out[end - start] = '\0';
    return CP_OK;
}

/*
 * The body of an A-ASSOCIATE-RQ or -AC. Items may come in any order; each
 * must be one the PDU type allows.
 */
static cp_status decode_assoc(decoder *d, pdu_assoc *a, const uint8_t *body, size_t len,
                              bool rq)
{
    const uint8_t *pos = body + ASSOC_FIXED_LEN;
    const uint8_t *end = body + len;
    bool have_context = false;
    item it = { 0 };
    cp_status st;

    a->protocol_version = get16(body);
    if (rq && ((st = decode_ae(d, body + 4, a->called_ae, "called")) != CP_OK ||
               (st = decode_ae(d, body + 20, a->calling_ae, "calling")) != CP_OK))
        return st;

    while (pos < end) {
        if ((st = next_item(d, &pos, end, &it)) != CP_OK)
            return st;
        switch (it.type) {
        case ITEM_APP_CONTEXT:
            if (have_context)
                return fail(d, CP_ERR_MALFORMED, PDU_ABORT_UNEXPECTED_PARAM, it.at,
                            "second application context item");
            have_context = true;
            st = take_uid(d, it.at, it.value, it.len, &a->app_context,
                          "application context name");
            break;
        case ITEM_PC_RQ:
        case ITEM_PC_AC:
            if ((it.type == ITEM_PC_RQ) != rq)
                return fail(d, CP_ERR_MALFORMED, PDU_ABORT_UNEXPECTED_PARAM, it.at,
                            "presentation context item %02XH in an A-ASSOCIATE-%s",
                            it.type, rq ? "RQ" : "AC");
            st = rq ? decode_pc_rq(d, a, &it) : decode_pc_ac(d, a, &it);
            break;
        case ITEM_USER_INFO:
            if (a->has_user_info)
                return fail(d, CP_ERR_MALFORMED, PDU_ABORT_UNEXPECTED_PARAM, it.at,
                            "second user information item");
            a->has_user_info = true;
            st = decode_user_info(d, &a->user, &it);
            break;
        default:
            st = fail(d, CP_ERR_MALFORMED, PDU_ABORT_UNRECOGNIZED_PARAM, it.at,
                      "unknown item type %02XH", it.type);
            break;
        }
        if (st != CP_OK)
            return st;
    }

    if (!have_context)
        return invalid(d, body, "no application context item");
    if (a->pc_count == 0)
        return invalid(d, body, "no presentation context item");
    return CP_OK;
}

/*
 * P-DATA-TF: checks every PDV, then fills descriptors into the caller's
 * bytes. The header reader made sure there is room for one PDV at least.
 */
static cp_status decode_pdata(decoder *d, pdu_pdata *pd, const uint8_t *body, size_t len)
{
    const uint8_t *pos = body;
    const uint8_t *end = body + len;
    size_t count = 0;

    while (pos < end) {
        size_t left = (size_t)(end - pos);
        uint32_t item_len;

        if (left < PDV_HEADER_LEN)
            return fail(d, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM, pos,
                        "PDV header needs 6 bytes, %zu left", left);
        item_len = get32(pos);
        if (item_len < 2 || item_len > left - 4)
            return fail(d, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM, pos,
                        "PDV item length %u does not fit the %zu bytes left",
                        item_len, left - 4);
        if (pos[4] % 2 == 0)
            return fail(d, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM, pos + 4,
                        "PDV presentation context ID %u is not odd", pos[4]);
        if (++count > PDU_PDVS_MAX)
            return fail(d, CP_ERR_LIMIT, PDU_ABORT_INVALID_PARAM, pos,
                        "more than %d PDVs in one P-DATA-TF", PDU_PDVS_MAX);
        pos += 4 + (size_t)item_len;
    }

    pd->pdvs = cp_calloc(count, sizeof *pd->pdvs);
    if (pd->pdvs == NULL)
        return nomem(d, body);
    pd->count = count;

    pos = body;
    for (size_t i = 0; i < count; i++) {
        size_t item_len = get32(pos);
        pdu_pdv *v = &pd->pdvs[i];

        v->pc_id = pos[4];
        v->command = (pos[5] & PDU_PDV_COMMAND) != 0;
        v->last = (pos[5] & PDU_PDV_LAST) != 0;
        v->data = pos + PDV_HEADER_LEN;
        v->len = item_len - 2;
        pos += 4 + item_len;
    }
    return CP_OK;
}

static bool type_known(uint8_t type)
{
    return type >= PDU_ASSOCIATE_RQ && type <= PDU_ABORT;
}

cp_status pdu_read_header(const uint8_t *hdr, size_t len, uint32_t max_length,
                          pdu_type *type, uint32_t *length,
                          pdu_abort_reason *reason, cp_error *err)
{
    decoder d = { hdr, reason, err };
    uint32_t n;
    uint32_t limit = max_length < PDU_LENGTH_MAX ? max_length : PDU_LENGTH_MAX;

    if (len < PDU_HEADER_LEN)
        return fail(&d, CP_ERR_TRUNCATED, PDU_ABORT_INVALID_PARAM, hdr,
                    "PDU header needs 6 bytes, %zu given", len);
    if (!type_known(hdr[0]))
        return fail(&d, CP_ERR_UNSUPPORTED, PDU_ABORT_UNRECOGNIZED_PDU, hdr,
                    "unknown PDU type %02XH", hdr[0]);

    n = get32(hdr + 2);
    if ((hdr[0] == PDU_ASSOCIATE_RQ || hdr[0] == PDU_ASSOCIATE_AC) &&
        limit > PDU_ASSOCIATE_MAX)
        limit = PDU_ASSOCIATE_MAX;
    if (n > limit)
        return fail(&d, CP_ERR_LIMIT, PDU_ABORT_INVALID_PARAM, hdr + 2,
                    "PDU length %u exceeds the maximum %u", n, limit);

    switch (hdr[0]) {
    case PDU_ASSOCIATE_RQ:
    case PDU_ASSOCIATE_AC:
        if (n < ASSOC_FIXED_LEN)
            return fail(&d, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM, hdr + 2,
                        "A-ASSOCIATE PDU length %u is below its 68 fixed bytes", n);
        break;
    case PDU_P_DATA_TF:
        if (n < PDV_HEADER_LEN)
            return fail(&d, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM, hdr + 2,
                        "P-DATA-TF length %u cannot hold a PDV", n);
        break;
    default:
        if (n != 4)
            return fail(&d, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM, hdr + 2,
                        "PDU type %02XH has length %u instead of 4", hdr[0], n);
        break;
    }

    *type = (pdu_type)hdr[0];
    *length = n;
    return CP_OK;
}

/* The PDUs of fixed length 4: A-ASSOCIATE-RJ, release, A-ABORT. */
static cp_status decode_short(decoder *d, pdu *p, const uint8_t *body)
{
    switch (p->type) {
    case PDU_ASSOCIATE_RJ:
        p->reject.result = body[1];
        p->reject.source = body[2];
        p->reject.reason = body[3];
        if (!reject_valid(body[1], body[2], body[3]))
            return fail(d, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM, body + 1,
                        "A-ASSOCIATE-RJ result %u, source %u, reason %u", body[1],
                        body[2], body[3]);
        return CP_OK;
    case PDU_ABORT:
        p->abort.source = body[2];
        p->abort.reason = body[3];
        if (!abort_valid(body[2], body[3]))
            return fail(d, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM, body + 2,
                        "A-ABORT source %u, reason %u", body[2], body[3]);
        return CP_OK;
    default:
        return CP_OK;
    }
}

cp_status pdu_decode(const uint8_t *data, size_t len, uint32_t max_length, pdu **out,
                     pdu_abort_reason *reason, cp_error *err)
{
    decoder d = { data, reason, err };
    pdu_type type;
    uint32_t length;
    pdu *p = NULL;
    const uint8_t *body;
    cp_status st;

    *out = NULL;
    st = pdu_read_header(data, len, max_length, &type, &length, reason, err);
    if (st != CP_OK)
        return st;
    if (len - PDU_HEADER_LEN < length)
        return fail(&d, CP_ERR_TRUNCATED, PDU_ABORT_INVALID_PARAM, data + len,
                    "PDU ends %zu bytes before its declared length %u",
                    length - (len - PDU_HEADER_LEN), length);
    if (len - PDU_HEADER_LEN > length)
        return fail(&d, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM,
                    data + PDU_HEADER_LEN + length, "%zu bytes after the PDU",
                    len - PDU_HEADER_LEN - length);

    p = cp_calloc(1, sizeof *p);
    if (p == NULL)
        return nomem(&d, data);
    p->type = type;
    body = data + PDU_HEADER_LEN;

    switch (type) {
    case PDU_ASSOCIATE_RQ:
    case PDU_ASSOCIATE_AC:
        /* Byte fields point into a copy, so the pdu outlives the caller's buffer. */
        p->owned = cp_malloc(len);
        if (p->owned == NULL) {
            st = nomem(&d, data);
            goto fail;
        }
        memcpy(p->owned, data, len);
        d.base = p->owned;
        st = decode_assoc(&d, &p->assoc, p->owned + PDU_HEADER_LEN, length,
                          type == PDU_ASSOCIATE_RQ);
        break;
    case PDU_P_DATA_TF:
        st = decode_pdata(&d, &p->pdata, body, length);
        break;
    default:
        st = decode_short(&d, p, body);
        break;
    }
    if (st != CP_OK)
        goto fail;

    *out = p;
    return CP_OK;

fail:
    pdu_destroy(p);
    return st;
}

static void user_info_free(pdu_user_info *u)
{
    for (size_t i = 0; i < u->common_ext_neg_count; i++)
        cp_free(u->common_ext_neg[i].related);
    cp_free(u->common_ext_neg);
    cp_free(u->ext_neg);
    cp_free(u->roles);
}

void pdu_destroy(pdu *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->assoc.pc_count; i++)
        cp_free(p->assoc.pcs[i].ts);
    cp_free(p->assoc.pcs);
    user_info_free(&p->assoc.user);
    cp_free(p->pdata.pdvs);
    cp_free(p->owned);
    cp_free(p);
}

/* ---- encoding ------------------------------------------------------------ */

/*
 * What one encoding needs: the output, where it started (to undo a failed
 * encoding) and where to report.
 */
typedef struct encoder {
    cp_buf *out;
    size_t start;
    cp_error *err;
    cp_status status;           /* the first failure; later writes do nothing */
} encoder;

static cp_status bad(encoder *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static cp_status bad(encoder *e, const char *fmt, ...)
{
    char detail[CP_ERROR_DETAIL_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);

    if (e->status == CP_OK)
        e->status = CP_ERR_INVALID;
    cp_error_set(e->err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, "%s", detail);
    return e->status;
}

static void put(encoder *e, const void *data, size_t len)
{
    if (e->status != CP_OK)
        return;
    if (cp_buf_append(e->out, data, len) != CP_OK) {
        e->status = CP_ERR_NOMEM;
        cp_error_set(e->err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                     "out of memory encoding a PDU");
    }
}

static void put8(encoder *e, uint8_t v)
{
    put(e, &v, 1);
}

static void put16(encoder *e, uint16_t v)
{
    uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };

    put(e, b, sizeof b);
}

static void put32(encoder *e, uint32_t v)
{
    uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8),
                     (uint8_t)v };

    put(e, b, sizeof b);
}

static void put_zeros(encoder *e, size_t n)
{
    static const uint8_t zeros[32];

    while (n > 0) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;

        put(e, zeros, k);
        n -= k;
    }
}

/* Starts an item (type, second byte, length to patch); returns its offset. */
static size_t item_begin(encoder *e, uint8_t type, uint8_t second)
{
    size_t at = e->out->len;

    put8(e, type);
    put8(e, second);
    put16(e, 0);
    return at;
}

static void item_end(encoder *e, size_t at)
{
    size_t len;

    if (e->status != CP_OK)
        return;
    len = e->out->len - at - ITEM_HEADER_LEN;
    if (len > ITEM_LENGTH_MAX) {
        bad(e, "item %02XH would be %zu bytes, more than 65535", e->out->data[at], len);
        return;
    }
    e->out->data[at + 2] = (uint8_t)(len >> 8);
    e->out->data[at + 3] = (uint8_t)len;
}

/* Starts a PDU; pdu_end patches its length and checks it against `limit`. */
static void pdu_begin(encoder *e, uint8_t type)
{
    put8(e, type);
    put8(e, 0);
    put32(e, 0);
}

static cp_status pdu_end(encoder *e, size_t limit)
{
    size_t len;

    if (e->status == CP_OK) {
        len = e->out->len - e->start - PDU_HEADER_LEN;
        if (len > limit) {
            bad(e, "PDU would be %zu bytes long, more than %zu", len, limit);
        } else {
            uint8_t *p = e->out->data + e->start + 2;

            p[0] = (uint8_t)(len >> 24);
            p[1] = (uint8_t)(len >> 16);
            p[2] = (uint8_t)(len >> 8);
            p[3] = (uint8_t)len;
        }
    }
    if (e->status != CP_OK && e->out->data != NULL) {
        e->out->len = e->start;
        e->out->data[e->start] = '\0';
    }
    return e->status;
}

static void put_uid_value(encoder *e, const char *uid, const char *what)
{
    size_t n;
    const char *problem = uid_problem((const uint8_t *)uid, strnlen(uid, PDU_UID_SIZE), &n);

    if (problem != NULL) {
        bad(e, "%s: %s", what, problem);
        return;
    }
    put(e, uid, n);
}

static void put_uid_item(encoder *e, uint8_t type, const char *uid, const char *what)
{
    size_t at = item_begin(e, type, 0);

    put_uid_value(e, uid, what);
    item_end(e, at);
}

/* A UID with its 2-byte length, as inside user information sub-items. */
static void put_uid_field(encoder *e, const char *uid, const char *what)
{
    size_t at = e->out->len;
    size_t n;

    put16(e, 0);
    put_uid_value(e, uid, what);
    if (e->status != CP_OK)
        return;
    n = e->out->len - at - 2;
    e->out->data[at] = (uint8_t)(n >> 8);
    e->out->data[at + 1] = (uint8_t)n;
}

static void put_bytes_field(encoder *e, const uint8_t *data, size_t len, const char *what)
{
    if (len > PDU_USER_IDENTITY_MAX || len > ITEM_LENGTH_MAX) {
        bad(e, "%s of %zu bytes is too long", what, len);
        return;
    }
    if (len > 0 && data == NULL) {
        bad(e, "%s has a length but no bytes", what);
        return;
    }
    put16(e, (uint16_t)len);
    if (len > 0)
        put(e, data, len);
}

/* An AE title field: the significant part, left-justified, space padded. */
static void put_ae(encoder *e, const char *ae, bool required, const char *what)
{
    char field[16];
    size_t len = strnlen(ae, PDU_AE_SIZE);
    size_t start = 0;

    if (!required && len == 0) {
        memset(field, ' ', sizeof field);
        put(e, field, sizeof field);
        return;
    }
    if (len >= PDU_AE_SIZE || !pdu_ae_is_valid(ae, len)) {
        bad(e, "%s AE title is not 1-16 valid AE characters", what);
        return;
    }
    while (ae[start] == ' ')
        start++;
    memset(field, ' ', sizeof field);
    memcpy(field, ae + start, len - start);
    put(e, field, sizeof field);
}

static bool context_ids_ok(encoder *e, const pdu_assoc *a)
{
    if (a->pc_count == 0 || a->pc_count > PDU_CONTEXTS_MAX || a->pcs == NULL) {
        bad(e, "%zu presentation contexts, not 1 to %d", a->pc_count, PDU_CONTEXTS_MAX);
        return false;
    }
    for (size_t i = 0; i < a->pc_count; i++) {
        if (a->pcs[i].id % 2 == 0) {
            bad(e, "presentation context ID %u is not odd", a->pcs[i].id);
            return false;
        }
        for (size_t j = 0; j < i; j++) {
            if (a->pcs[j].id == a->pcs[i].id) {
                bad(e, "presentation context ID %u appears twice", a->pcs[i].id);
                return false;
            }
        }
    }
    return true;
}

static void put_pc_rq(encoder *e, const pdu_pres_ctx *pc)
{
    size_t at;

    if (pc->ts_count == 0 || pc->ts_count > PDU_TS_PER_CONTEXT_MAX || pc->ts == NULL) {
        bad(e, "presentation context %u proposes %zu transfer syntaxes, not 1 to %d",
            pc->id, pc->ts_count, PDU_TS_PER_CONTEXT_MAX);
        return;
    }
    at = item_begin(e, ITEM_PC_RQ, 0);
    put8(e, pc->id);
    put_zeros(e, 3);
    put_uid_item(e, ITEM_ABSTRACT_SYNTAX, pc->abstract_syntax.value, "abstract syntax");
    for (size_t i = 0; i < pc->ts_count; i++)
        put_uid_item(e, ITEM_TRANSFER_SYNTAX, pc->ts[i].value, "transfer syntax");
    item_end(e, at);
}

static void put_pc_ac(encoder *e, const pdu_pres_ctx *pc)
{
    size_t at;
    size_t ts_at;

    if (pc->result > PDU_PC_TRANSFER_SYNTAXES_NOT_SUPPORTED || pc->ts_count > 1 ||
        (pc->ts_count == 1 && pc->ts == NULL) ||
        (pc->result == PDU_PC_ACCEPTANCE && pc->ts_count != 1)) {
        bad(e, "presentation context %u: result %u with %zu transfer syntaxes",
            pc->id, pc->result, pc->ts_count);
        return;
    }
    at = item_begin(e, ITEM_PC_AC, 0);
    put8(e, pc->id);
    put8(e, 0);
    put8(e, pc->result);
    put8(e, 0);
    ts_at = item_begin(e, ITEM_TRANSFER_SYNTAX, 0);
    if (pc->ts_count == 1)
        put_uid_value(e, pc->ts[0].value, "transfer syntax");
    item_end(e, ts_at);
    item_end(e, at);
}

static void put_fixed_subs(encoder *e, const pdu_user_info *u)
{
    size_t at;
    size_t n;

    if (u->has_max_length) {
        at = item_begin(e, SUB_MAX_LENGTH, 0);
        put32(e, u->max_length);
        item_end(e, at);
    }
    if (u->impl_class_uid.value[0] != '\0')
        put_uid_item(e, SUB_IMPL_CLASS, u->impl_class_uid.value,
                     "implementation class UID");
    if (u->has_async_window) {
        at = item_begin(e, SUB_ASYNC_WINDOW, 0);
        put16(e, u->max_ops_invoked);
        put16(e, u->max_ops_performed);
        item_end(e, at);
    }
    for (size_t i = 0; i < u->role_count; i++) {
        const pdu_role *r = &u->roles[i];

        if (r->scu_role > 1 || r->scp_role > 1) {
            bad(e, "role selection value other than 0 or 1");
            return;
        }
        at = item_begin(e, SUB_ROLE, 0);
        put_uid_field(e, r->sop_class.value, "role selection SOP class");
        put8(e, r->scu_role);
        put8(e, r->scp_role);
        item_end(e, at);
    }
    if (u->impl_version[0] != '\0') {
        const uint8_t *v = (const uint8_t *)u->impl_version;
        size_t len = strnlen(u->impl_version, PDU_VERSION_NAME_SIZE);

        if (len == PDU_VERSION_NAME_SIZE || version_problem(v, len, &n) != NULL ||
            n != len) {
            bad(e, "implementation version name is not 1-16 printable characters");
            return;
        }
        at = item_begin(e, SUB_IMPL_VERSION, 0);
        put(e, v, len);
        item_end(e, at);
    }
}

static void put_negotiation_subs(encoder *e, const pdu_user_info *u)
{
    size_t at;

    for (size_t i = 0; i < u->ext_neg_count; i++) {
        const pdu_ext_neg *x = &u->ext_neg[i];

        if (x->info_len > 0 && x->info == NULL) {
            bad(e, "extended negotiation information has a length but no bytes");
            return;
        }
        at = item_begin(e, SUB_EXT_NEG, 0);
        put_uid_field(e, x->sop_class.value, "extended negotiation SOP class");
        if (x->info_len > 0)
            put(e, x->info, x->info_len);
        item_end(e, at);
    }
    for (size_t i = 0; i < u->common_ext_neg_count; i++) {
        const pdu_common_ext_neg *c = &u->common_ext_neg[i];
        size_t list_at, list_len;

        if (c->related_count > PDU_RELATED_CLASSES_MAX ||
            (c->related_count > 0 && c->related == NULL)) {
            bad(e, "%zu related general SOP classes", c->related_count);
            return;
        }
        at = item_begin(e, SUB_COMMON_EXT_NEG, c->version);
        put_uid_field(e, c->sop_class.value, "common extended SOP class");
        put_uid_field(e, c->service_class.value, "common extended service class");
        list_at = e->out->len;
        put16(e, 0);
        for (size_t j = 0; j < c->related_count; j++)
            put_uid_field(e, c->related[j].value, "related general SOP class");
        if (e->status == CP_OK) {
            list_len = e->out->len - list_at - 2;
            if (list_len > ITEM_LENGTH_MAX) {
                bad(e, "related general SOP class list too long");
                return;
            }
            e->out->data[list_at] = (uint8_t)(list_len >> 8);
            e->out->data[list_at + 1] = (uint8_t)list_len;
        }
        item_end(e, at);
    }
}

static void put_user_info(encoder *e, const pdu_user_info *u)
{
    size_t at = item_begin(e, ITEM_USER_INFO, 0);
    size_t sub;

    if ((u->role_count > 0 && u->roles == NULL) ||
        (u->ext_neg_count > 0 && u->ext_neg == NULL) ||
        (u->common_ext_neg_count > 0 && u->common_ext_neg == NULL) ||
        u->role_count + u->ext_neg_count + u->common_ext_neg_count >
            PDU_USER_ITEMS_MAX - 6) {
        bad(e, "user information sub-item arrays missing or too long");
        return;
    }
    put_fixed_subs(e, u);
    put_negotiation_subs(e, u);
    if (u->has_identity_rq) {
        const pdu_identity_rq *id = &u->identity_rq;

        sub = item_begin(e, SUB_IDENTITY_RQ, 0);
        put8(e, id->type);
        put8(e, id->response_requested ? 1 : 0);
        put_bytes_field(e, id->primary, id->primary_len, "user identity primary field");
        put_bytes_field(e, id->secondary, id->secondary_len,
                        "user identity secondary field");
        item_end(e, sub);
    }
    if (u->has_identity_ac) {
        sub = item_begin(e, SUB_IDENTITY_AC, 0);
        put_bytes_field(e, u->identity_response, u->identity_response_len,
                        "user identity server response");
        item_end(e, sub);
    }
    item_end(e, at);
}

static cp_status encode_assoc(cp_buf *out, const pdu_assoc *a, bool rq, cp_error *err)
{
    encoder e = { out, out->len, err, CP_OK };

    pdu_begin(&e, rq ? PDU_ASSOCIATE_RQ : PDU_ASSOCIATE_AC);
    put16(&e, a->protocol_version);
    put16(&e, 0);
    put_ae(&e, a->called_ae, rq, "called");
    put_ae(&e, a->calling_ae, rq, "calling");
    put_zeros(&e, 32);
    put_uid_item(&e, ITEM_APP_CONTEXT, a->app_context.value, "application context name");

    if (context_ids_ok(&e, a)) {
        for (size_t i = 0; i < a->pc_count && e.status == CP_OK; i++) {
            if (rq)
                put_pc_rq(&e, &a->pcs[i]);
            else
                put_pc_ac(&e, &a->pcs[i]);
        }
    }
    if (a->has_user_info)
        put_user_info(&e, &a->user);
    return pdu_end(&e, PDU_ASSOCIATE_MAX);
}

cp_status pdu_encode_associate_rq(cp_buf *out, const pdu_assoc *rq, cp_error *err)
{
    return encode_assoc(out, rq, true, err);
}

cp_status pdu_encode_associate_ac(cp_buf *out, const pdu_assoc *ac, cp_error *err)
{
    return encode_assoc(out, ac, false, err);
}

static cp_status encode_four(cp_buf *out, uint8_t type, const uint8_t body[4],
                             cp_error *err)
{
    encoder e = { out, out->len, err, CP_OK };

    pdu_begin(&e, type);
    put(&e, body, 4);
    return pdu_end(&e, 4);
}

cp_status pdu_encode_associate_rj(cp_buf *out, const pdu_reject *rj, cp_error *err)
{
    uint8_t body[4] = { 0, rj->result, rj->source, rj->reason };

    if (!reject_valid(rj->result, rj->source, rj->reason))
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "A-ASSOCIATE-RJ result %u, source %u, reason %u",
                            rj->result, rj->source, rj->reason);
    return encode_four(out, PDU_ASSOCIATE_RJ, body, err);
}

cp_status pdu_encode_release_rq(cp_buf *out)
{
    static const uint8_t body[4];

    return encode_four(out, PDU_RELEASE_RQ, body, NULL);
}

cp_status pdu_encode_release_rp(cp_buf *out)
{
    static const uint8_t body[4];

    return encode_four(out, PDU_RELEASE_RP, body, NULL);
}

cp_status pdu_encode_abort(cp_buf *out, const pdu_abort *ab, cp_error *err)
{
    uint8_t body[4] = { 0, 0, ab->source, ab->reason };

    if (!abort_valid(ab->source, ab->reason))
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "A-ABORT source %u, reason %u", ab->source, ab->reason);
    return encode_four(out, PDU_ABORT, body, err);
}

cp_status pdu_encode_pdata(cp_buf *out, const pdu_pdv *pdvs, size_t count, cp_error *err)
{
    encoder e = { out, out->len, err, CP_OK };

    if (count == 0 || count > PDU_PDVS_MAX || pdvs == NULL)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "%zu PDVs, not 1 to %d", count, PDU_PDVS_MAX);
    pdu_begin(&e, PDU_P_DATA_TF);
    for (size_t i = 0; i < count && e.status == CP_OK; i++) {
        const pdu_pdv *v = &pdvs[i];

        if (v->pc_id % 2 == 0 || v->len > PDU_LENGTH_MAX || (v->len > 0 && !v->data)) {
            bad(&e, "PDV %zu: context ID %u, %zu bytes", i, v->pc_id, v->len);
            break;
        }
        put32(&e, (uint32_t)v->len + 2);
        put8(&e, v->pc_id);
        put8(&e, (uint8_t)((v->command ? PDU_PDV_COMMAND : 0) |
                           (v->last ? PDU_PDV_LAST : 0)));
        if (v->len > 0)
            put(&e, v->data, v->len);
    }
    return pdu_end(&e, PDU_LENGTH_MAX);
}

size_t pdu_pdv_payload_max(uint32_t peer_max_length)
{
    uint32_t limit = peer_max_length;

    if (limit == 0 || limit > PDU_SEND_MAX)
        limit = PDU_SEND_MAX;
    if (limit < PDV_HEADER_LEN + 2)
        return 0;
    return (size_t)(limit - PDV_HEADER_LEN) & ~(size_t)1;
}

cp_status pdu_encode_pdata_fragments(cp_buf *out, uint8_t pc_id, bool command,
                                     const uint8_t *data, size_t len,
                                     uint32_t peer_max_length, bool last,
                                     cp_error *err)
{
    size_t payload = pdu_pdv_payload_max(peer_max_length);
    size_t start = out->len;
    size_t done = 0;
    cp_status st;

    if (payload == 0)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "peer maximum length %u leaves no room for a PDV",
                            peer_max_length);

    while (done < len || (len == 0 && last && done == 0)) {
        size_t n = len - done < payload ? len - done : payload;
        pdu_pdv v = { pc_id, command, last && done + n == len, data + done, n };

        st = pdu_encode_pdata(out, &v, 1, err);
        if (st != CP_OK) {
            if (out->data != NULL) {
                out->len = start;
                out->data[start] = '\0';
            }
            return st;
        }
        done += n;
        if (len == 0)
            break;
    }
    return CP_OK;
}

cp_status pdu_encode(cp_buf *out, const pdu *p, cp_error *err)
{
    switch (p->type) {
    case PDU_ASSOCIATE_RQ:
        return pdu_encode_associate_rq(out, &p->assoc, err);
    case PDU_ASSOCIATE_AC:
        return pdu_encode_associate_ac(out, &p->assoc, err);
    case PDU_ASSOCIATE_RJ:
        return pdu_encode_associate_rj(out, &p->reject, err);
    case PDU_P_DATA_TF:
        return pdu_encode_pdata(out, p->pdata.pdvs, p->pdata.count, err);
    case PDU_RELEASE_RQ:
        return pdu_encode_release_rq(out);
    case PDU_RELEASE_RP:
        return pdu_encode_release_rp(out);
    case PDU_ABORT:
        return pdu_encode_abort(out, &p->abort, err);
    }
    return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                        "unknown PDU type %d", (int)p->type);
}

/* ---- comparison ---------------------------------------------------------- */

static bool bytes_equal(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static bool uids_equal(const pdu_uid *a, const pdu_uid *b, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (strcmp(a[i].value, b[i].value) != 0)
            return false;
    }
    return true;
}

static bool contexts_equal(const pdu_pres_ctx *a, const pdu_pres_ctx *b)
{
    return a->id == b->id && a->result == b->result &&
           strcmp(a->abstract_syntax.value, b->abstract_syntax.value) == 0 &&
           a->ts_count == b->ts_count && uids_equal(a->ts, b->ts, a->ts_count);
}

static bool negotiations_equal(const pdu_user_info *a, const pdu_user_info *b)
{
    if (a->role_count != b->role_count || a->ext_neg_count != b->ext_neg_count ||
        a->common_ext_neg_count != b->common_ext_neg_count)
        return false;
    for (size_t i = 0; i < a->role_count; i++) {
        const pdu_role *x = &a->roles[i], *y = &b->roles[i];

        if (strcmp(x->sop_class.value, y->sop_class.value) != 0 ||
            x->scu_role != y->scu_role || x->scp_role != y->scp_role)
            return false;
    }
    for (size_t i = 0; i < a->ext_neg_count; i++) {
        const pdu_ext_neg *x = &a->ext_neg[i], *y = &b->ext_neg[i];

        if (strcmp(x->sop_class.value, y->sop_class.value) != 0 ||
            !bytes_equal(x->info, x->info_len, y->info, y->info_len))
            return false;
    }
    for (size_t i = 0; i < a->common_ext_neg_count; i++) {
        const pdu_common_ext_neg *x = &a->common_ext_neg[i], *y = &b->common_ext_neg[i];

        if (x->version != y->version ||
            strcmp(x->sop_class.value, y->sop_class.value) != 0 ||
            strcmp(x->service_class.value, y->service_class.value) != 0 ||
            x->related_count != y->related_count ||
            !uids_equal(x->related, y->related, x->related_count))
            return false;
    }
    return true;
}

static bool user_info_equal(const pdu_user_info *a, const pdu_user_info *b)
{
    const pdu_identity_rq *x = &a->identity_rq, *y = &b->identity_rq;

    if (a->has_max_length != b->has_max_length ||
        (a->has_max_length && a->max_length != b->max_length) ||
        strcmp(a->impl_class_uid.value, b->impl_class_uid.value) != 0 ||
        strcmp(a->impl_version, b->impl_version) != 0 ||
        a->has_async_window != b->has_async_window ||
        (a->has_async_window && (a->max_ops_invoked != b->max_ops_invoked ||
                                 a->max_ops_performed != b->max_ops_performed)))
        return false;
    if (!negotiations_equal(a, b))
        return false;
    if (a->has_identity_rq != b->has_identity_rq ||
        (a->has_identity_rq &&
         (x->type != y->type || x->response_requested != y->response_requested ||
          !bytes_equal(x->primary, x->primary_len, y->primary, y->primary_len) ||
          !bytes_equal(x->secondary, x->secondary_len, y->secondary, y->secondary_len))))
        return false;
    return a->has_identity_ac == b->has_identity_ac &&
           (!a->has_identity_ac ||
            bytes_equal(a->identity_response, a->identity_response_len,
                        b->identity_response, b->identity_response_len));
}

static bool assoc_equal(const pdu_assoc *a, const pdu_assoc *b)
{
    if (a->protocol_version != b->protocol_version ||
        strcmp(a->called_ae, b->called_ae) != 0 ||
        strcmp(a->calling_ae, b->calling_ae) != 0 ||
        strcmp(a->app_context.value, b->app_context.value) != 0 ||
        a->pc_count != b->pc_count || a->has_user_info != b->has_user_info)
        return false;
    for (size_t i = 0; i < a->pc_count; i++) {
        if (!contexts_equal(&a->pcs[i], &b->pcs[i]))
            return false;
    }
    return !a->has_user_info || user_info_equal(&a->user, &b->user);
}

static bool pdata_equal(const pdu_pdata *a, const pdu_pdata *b)
{
    if (a->count != b->count)
        return false;
    for (size_t i = 0; i < a->count; i++) {
        const pdu_pdv *x = &a->pdvs[i], *y = &b->pdvs[i];

        if (x->pc_id != y->pc_id || x->command != y->command || x->last != y->last ||
            !bytes_equal(x->data, x->len, y->data, y->len))
            return false;
    }
    return true;
}

bool pdu_equal(const pdu *a, const pdu *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case PDU_ASSOCIATE_RQ:
    case PDU_ASSOCIATE_AC:
        return assoc_equal(&a->assoc, &b->assoc);
    case PDU_ASSOCIATE_RJ:
        return a->reject.result == b->reject.result &&
               a->reject.source == b->reject.source &&
               a->reject.reason == b->reject.reason;
    case PDU_P_DATA_TF:
        return pdata_equal(&a->pdata, &b->pdata);
    case PDU_ABORT:
        return a->abort.source == b->abort.source && a->abort.reason == b->abort.reason;
    case PDU_RELEASE_RQ:
    case PDU_RELEASE_RP:
        return true;
    }
    return false;
}

/*
 * test_net_pdu.c - the upper layer PDU codec (PS3.8 9.3) as protocol
 * exchanges kept as data: bytes a real peer sent, decoded field by field;
 * bytes our encoder must produce, compared byte for byte; and malformed
 * PDUs with the A-ABORT reason (PS3.8 9.3.8) each must map to.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/limits.h"
#include "net/pdu.h"

/*
 * The A-ASSOCIATE-RQ of DCMTK 3.6.7 `echoscu -aet ECHOSCU -aec ANY
 * 127.0.0.1 <port>`, captured by a Python listener on 127.0.0.1 that wrote
 * the bytes it received to a file. Note the reserved byte FFH after the
 * presentation context ID: receivers must not test reserved fields.
 */
static const uint8_t echoscu_rq[] = {
    0x01, 0x00, 0x00, 0x00, 0x00, 0xcd, 0x00, 0x01, 0x00, 0x00, 0x41, 0x4e,
    0x59, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x45, 0x43, 0x48, 0x4f, 0x53, 0x43, 0x55, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x10, 0x00, 0x00, 0x15, 0x31, 0x2e, 0x32, 0x2e, 0x38, 0x34,
    0x30, 0x2e, 0x31, 0x30, 0x30, 0x30, 0x38, 0x2e, 0x33, 0x2e, 0x31, 0x2e,
    0x31, 0x2e, 0x31, 0x20, 0x00, 0x00, 0x2e, 0x01, 0x00, 0xff, 0x00, 0x30,
    0x00, 0x00, 0x11, 0x31, 0x2e, 0x32, 0x2e, 0x38, 0x34, 0x30, 0x2e, 0x31,
    0x30, 0x30, 0x30, 0x38, 0x2e, 0x31, 0x2e, 0x31, 0x40, 0x00, 0x00, 0x11,
    0x31, 0x2e, 0x32, 0x2e, 0x38, 0x34, 0x30, 0x2e, 0x31, 0x30, 0x30, 0x30,
    0x38, 0x2e, 0x31, 0x2e, 0x32, 0x50, 0x00, 0x00, 0x3a, 0x51, 0x00, 0x00,
    0x04, 0x00, 0x00, 0x40, 0x00, 0x52, 0x00, 0x00, 0x1b, 0x31, 0x2e, 0x32,
    0x2e, 0x32, 0x37, 0x36, 0x2e, 0x30, 0x2e, 0x37, 0x32, 0x33, 0x30, 0x30,
    0x31, 0x30, 0x2e, 0x33, 0x2e, 0x30, 0x2e, 0x33, 0x2e, 0x36, 0x2e, 0x37,
    0x55, 0x00, 0x00, 0x0f, 0x4f, 0x46, 0x46, 0x49, 0x53, 0x5f, 0x44, 0x43,
    0x4d, 0x54, 0x4b, 0x5f, 0x33, 0x36, 0x37,
};

/* Offsets in echoscu_rq, for the malformed variants. */
#define RQ_CALLED_AE     10
#define RQ_APP_CONTEXT   74
#define RQ_PC_ITEM       99
#define RQ_ABSTRACT      107
#define RQ_TS            128

/*
 * The A-ASSOCIATE-AC we answer it with, written out by hand from PS3.8
 * Table 9-17. Played back to the same echoscu by the listener, it was
 * accepted ("Association Accepted (Max Send PDV: 131060)") and the C-ECHO
 * and release that follow completed.
 */
static const uint8_t echo_ac[] = {
    0x02, 0x00, 0x00, 0x00, 0x00, 0xa2,             /* A-ASSOCIATE-AC, 162 */
    0x00, 0x01, 0x00, 0x00,                         /* version 1, reserved */
    'A', 'N', 'Y', ' ', ' ', ' ', ' ', ' ',         /* called AE (reserved) */
    ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ',
    'E', 'C', 'H', 'O', 'S', 'C', 'U', ' ',         /* calling AE (reserved) */
    ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ',
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 32 reserved */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0x10, 0x00, 0x00, 0x15,                         /* application context */
    '1', '.', '2', '.', '8', '4', '0', '.', '1', '0', '0', '0', '8', '.',
    '3', '.', '1', '.', '1', '.', '1',
    0x21, 0x00, 0x00, 0x19,                         /* presentation context */
    0x01, 0x00, 0x00, 0x00,                         /* id 1, acceptance */
    0x40, 0x00, 0x00, 0x11,                         /* transfer syntax */
    '1', '.', '2', '.', '8', '4', '0', '.', '1', '0', '0', '0', '8', '.',
    '1', '.', '2',
    0x50, 0x00, 0x00, 0x24,                         /* user information */
    0x51, 0x00, 0x00, 0x04, 0x00, 0x10, 0x00, 0x00, /* max length 1 MiB */
    0x52, 0x00, 0x00, 0x07, '1', '.', '2', '.', '3', '.', '4',
    0x55, 0x00, 0x00, 0x0d,
    'C', 'L', 'O', 'U', 'D', 'P', 'A', 'C', 'S', '_', '0', '1', '0',
};

/* The C-ECHO-RQ P-DATA-TF echoscu sent after that -AC, captured the same way. */
static const uint8_t echoscu_pdata[] = {
    0x04, 0x00, 0x00, 0x00, 0x00, 0x4a, 0x00, 0x00, 0x00, 0x46, 0x01, 0x03,
    0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x38, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x02, 0x00, 0x12, 0x00, 0x00, 0x00, 0x31, 0x2e, 0x32, 0x2e,
    0x38, 0x34, 0x30, 0x2e, 0x31, 0x30, 0x30, 0x30, 0x38, 0x2e, 0x31, 0x2e,
    0x31, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x30, 0x00,
    0x00, 0x00, 0x10, 0x01, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
    0x00, 0x08, 0x02, 0x00, 0x00, 0x00, 0x01, 0x01,
};

/* ---- helpers -------------------------------------------------------------- */

static pdu *decode_ok(const uint8_t *data, size_t len)
{
    pdu *p = NULL;
    cp_error err;
    pdu_abort_reason reason = PDU_ABORT_NOT_SPECIFIED;
    char text[512];

    cp_error_clear(&err);
    if (pdu_decode(data, len, PDU_LENGTH_MAX, &p, &reason, &err) != CP_OK)
        fail_msg("decode failed: %s", cp_error_format(&err, text, sizeof text));
    return p;
}

/* Decodes bytes that must fail with `status` and abort `reason`; returns the offset. */
static int64_t decode_fails(const uint8_t *data, size_t len, cp_status status,
                            pdu_abort_reason reason)
{
    pdu *p = (pdu *)1;
    cp_error err;
    pdu_abort_reason got = PDU_ABORT_NOT_SPECIFIED;

    cp_error_clear(&err);
    assert_int_equal(pdu_decode(data, len, PDU_LENGTH_MAX, &p, &got, &err), status);
    assert_null(p);
    assert_int_equal(err.status, status);
    assert_int_equal(got, reason);
    assert_true(err.detail[0] != '\0');
    return err.offset;
}

static void put_be16(cp_buf *b, size_t v)
{
    uint8_t x[2] = { (uint8_t)(v >> 8), (uint8_t)v };

    assert_int_equal(cp_buf_append(b, x, 2), CP_OK);
}

static void put_item(cp_buf *b, uint8_t type, const void *value, size_t len)
{
    assert_int_equal(cp_buf_append_byte(b, type), CP_OK);
    assert_int_equal(cp_buf_append_byte(b, 0), CP_OK);
    put_be16(b, len);
    assert_int_equal(cp_buf_append(b, value, len), CP_OK);
}

static void put_str_item(cp_buf *b, uint8_t type, const char *s)
{
    put_item(b, type, s, strlen(s));
}

/* A presentation context item 20H with one abstract and one transfer syntax. */
static void put_pc(cp_buf *b, uint8_t id, const char *abstract, const char *ts)
{
    cp_buf v = CP_BUF_INIT;
    uint8_t head[4] = { id, 0, 0, 0 };

    assert_int_equal(cp_buf_append(&v, head, 4), CP_OK);
    if (abstract != NULL)
        put_str_item(&v, 0x30, abstract);
    if (ts != NULL)
        put_str_item(&v, 0x40, ts);
    put_item(b, 0x20, v.data, v.len);
    cp_buf_free(&v);
}

/* An A-ASSOCIATE-RQ from ECHOSCU to ANY around the given items. */
static void make_rq(cp_buf *out, const cp_buf *items)
{
    uint8_t head[74] = { 0x01, 0x00 };
    size_t len = 68 + items->len;

    head[2] = (uint8_t)(len >> 24);
    head[3] = (uint8_t)(len >> 16);
    head[4] = (uint8_t)(len >> 8);
    head[5] = (uint8_t)len;
    head[7] = 0x01;
    memcpy(head + 10, "ANY             ECHOSCU         ", 32);
    cp_buf_reset(out);
    assert_int_equal(cp_buf_append(out, head, sizeof head), CP_OK);
    assert_int_equal(cp_buf_append(out, items->data, items->len), CP_OK);
}

static void put_app_context(cp_buf *items)
{
    put_str_item(items, 0x10, PDU_APPLICATION_CONTEXT);
}

static uint8_t *copy_of(const uint8_t *data, size_t len)
{
    uint8_t *c = cp_malloc(len);

    assert_non_null(c);
    memcpy(c, data, len);
    return c;
}

/* Encodes p, decodes the bytes, and checks both carry the same values. */
static void assert_round_trip(const pdu *p)
{
    cp_buf b = CP_BUF_INIT;
    pdu *again;

    assert_int_equal(pdu_encode(&b, p, NULL), CP_OK);
    again = decode_ok(b.data, b.len);
    assert_true(pdu_equal(p, again));
    pdu_destroy(again);
    cp_buf_free(&b);
}

/* ---- real exchanges -------------------------------------------------------- */

static void test_echoscu_rq_decoded(void **state)
{
    pdu *p;
    const pdu_assoc *a;
    pdu_type type;
    uint32_t length;

    (void)state;
    assert_int_equal(pdu_read_header(echoscu_rq, 6, PDU_RECEIVE_MAX_DEFAULT, &type,
                                     &length, NULL, NULL), CP_OK);
    assert_int_equal(type, PDU_ASSOCIATE_RQ);
    assert_int_equal(length, sizeof echoscu_rq - 6);

    p = decode_ok(echoscu_rq, sizeof echoscu_rq);
    a = &p->assoc;
    assert_int_equal(p->type, PDU_ASSOCIATE_RQ);
    assert_int_equal(a->protocol_version, PDU_PROTOCOL_VERSION);
    assert_string_equal(a->called_ae, "ANY");
    assert_string_equal(a->calling_ae, "ECHOSCU");
    assert_string_equal(a->app_context.value, PDU_APPLICATION_CONTEXT);

    assert_int_equal(a->pc_count, 1);
    assert_int_equal(a->pcs[0].id, 1);
    assert_string_equal(a->pcs[0].abstract_syntax.value, "1.2.840.10008.1.1");
    assert_int_equal(a->pcs[0].ts_count, 1);
    assert_string_equal(a->pcs[0].ts[0].value, "1.2.840.10008.1.2");

    assert_true(a->has_user_info);
    assert_true(a->user.has_max_length);
    assert_int_equal(a->user.max_length, 16384);
    assert_string_equal(a->user.impl_class_uid.value, "1.2.276.0.7230010.3.0.3.6.7");
    assert_string_equal(a->user.impl_version, "OFFIS_DCMTK_367");
    assert_false(a->user.has_async_window);
    assert_int_equal(a->user.role_count, 0);
    assert_false(a->user.has_identity_rq);
    assert_round_trip(p);
    pdu_destroy(p);
}

/* The decoded RQ does not depend on the buffer it came from. */
static void test_rq_outlives_its_buffer(void **state)
{
    uint8_t *copy = copy_of(echoscu_rq, sizeof echoscu_rq);
    pdu *p = decode_ok(copy, sizeof echoscu_rq);

    (void)state;
    memset(copy, 0xAA, sizeof echoscu_rq);
    cp_free(copy);
    assert_string_equal(p->assoc.called_ae, "ANY");
    assert_string_equal(p->assoc.user.impl_version, "OFFIS_DCMTK_367");
    pdu_destroy(p);
}

static void test_ac_encoded_exactly(void **state)
{
    pdu_uid ts[1] = { { "1.2.840.10008.1.2" } };
    pdu_pres_ctx pc = { .id = 1, .result = PDU_PC_ACCEPTANCE, .ts_count = 1, .ts = ts };
    pdu_assoc ac = {
        .protocol_version = PDU_PROTOCOL_VERSION,
        .called_ae = "ANY",
        .calling_ae = "ECHOSCU",
        .app_context = { PDU_APPLICATION_CONTEXT },
        .pc_count = 1,
        .pcs = &pc,
        .has_user_info = true,
        .user = {
            .has_max_length = true,
            .max_length = PDU_RECEIVE_MAX_DEFAULT,
            .impl_class_uid = { "1.2.3.4" },
            .impl_version = "CLOUDPACS_010",
        },
    };
    cp_buf out = CP_BUF_INIT;
    pdu *p;

    (void)state;
    assert_int_equal(pdu_encode_associate_ac(&out, &ac, NULL), CP_OK);
    assert_int_equal(out.len, sizeof echo_ac);
    assert_memory_equal(out.data, echo_ac, sizeof echo_ac);

    p = decode_ok(out.data, out.len);
    assert_int_equal(p->type, PDU_ASSOCIATE_AC);
    assert_string_equal(p->assoc.called_ae, "");   /* reserved in an -AC */
    assert_int_equal(p->assoc.pcs[0].result, PDU_PC_ACCEPTANCE);
    assert_string_equal(p->assoc.pcs[0].ts[0].value, "1.2.840.10008.1.2");
    assert_int_equal(p->assoc.user.max_length, PDU_RECEIVE_MAX_DEFAULT);
    pdu_destroy(p);
    cp_buf_free(&out);
}

static void test_echoscu_pdata(void **state)
{
    pdu *p = decode_ok(echoscu_pdata, sizeof echoscu_pdata);
    const pdu_pdv *v;

    (void)state;
    assert_int_equal(p->type, PDU_P_DATA_TF);
    assert_int_equal(p->pdata.count, 1);
    v = &p->pdata.pdvs[0];
    assert_int_equal(v->pc_id, 1);
    assert_true(v->command);
    assert_true(v->last);
    assert_int_equal(v->len, 68);
    /* Not copied: the PDV points at the command set in the PDU. */
    assert_ptr_equal(v->data, echoscu_pdata + 12);
    assert_round_trip(p);
    pdu_destroy(p);
}

static void test_release_and_abort_bytes(void **state)
{
    static const uint8_t release_rq[] = { 5, 0, 0, 0, 0, 4, 0, 0, 0, 0 };
    static const uint8_t release_rp[] = { 6, 0, 0, 0, 0, 4, 0, 0, 0, 0 };
    static const uint8_t abort_6[] = { 7, 0, 0, 0, 0, 4, 0, 0, 2, 6 };
    pdu_abort ab = { PDU_ABORT_SOURCE_PROVIDER, PDU_ABORT_INVALID_PARAM };
    cp_buf out = CP_BUF_INIT;
    pdu *p;

    (void)state;
    assert_int_equal(pdu_encode_release_rq(&out), CP_OK);
    assert_int_equal(pdu_encode_release_rp(&out), CP_OK);
    assert_int_equal(pdu_encode_abort(&out, &ab, NULL), CP_OK);
    assert_int_equal(out.len, 30);
    assert_memory_equal(out.data, release_rq, 10);
    assert_memory_equal(out.data + 10, release_rp, 10);
    assert_memory_equal(out.data + 20, abort_6, 10);

    p = decode_ok(release_rq, sizeof release_rq);
    assert_int_equal(p->type, PDU_RELEASE_RQ);
    assert_round_trip(p);
    pdu_destroy(p);
    p = decode_ok(release_rp, sizeof release_rp);
    assert_int_equal(p->type, PDU_RELEASE_RP);
    pdu_destroy(p);
    p = decode_ok(abort_6, sizeof abort_6);
    assert_int_equal(p->abort.source, PDU_ABORT_SOURCE_PROVIDER);
    assert_int_equal(p->abort.reason, PDU_ABORT_INVALID_PARAM);
    assert_round_trip(p);
    pdu_destroy(p);
    cp_buf_free(&out);
}

static void test_abort_from_user_reason_untested(void **state)
{
    /* From the service user the reason is not significant: any value passes. */
    static const uint8_t abort_user[] = { 7, 0, 0, 0, 0, 4, 0xAB, 0xCD, 0, 0x99 };
    static const uint8_t abort_bad[] = { 7, 0, 0, 0, 0, 4, 0, 0, 2, 9 };
    static const uint8_t abort_source[] = { 7, 0, 0, 0, 0, 4, 0, 0, 3, 0 };
    pdu_abort bad = { PDU_ABORT_SOURCE_PROVIDER, 7 };
    cp_buf out = CP_BUF_INIT;
    pdu *p = decode_ok(abort_user, sizeof abort_user);

    (void)state;
    assert_int_equal(p->abort.source, PDU_ABORT_SOURCE_USER);
    pdu_destroy(p);
    assert_int_equal(decode_fails(abort_bad, sizeof abort_bad, CP_ERR_MALFORMED,
                                  PDU_ABORT_INVALID_PARAM), 8);
    decode_fails(abort_source, sizeof abort_source, CP_ERR_MALFORMED,
                 PDU_ABORT_INVALID_PARAM);
    assert_int_equal(pdu_encode_abort(&out, &bad, NULL), CP_ERR_INVALID);
    assert_int_equal(out.len, 0);
    cp_buf_free(&out);
}

static void test_reject_round_trip(void **state)
{
    static const uint8_t called_ae_rj[] = { 3, 0, 0, 0, 0, 4, 0, 1, 1, 7 };
    pdu_reject rj = { PDU_REJECT_PERMANENT, PDU_REJECT_SOURCE_USER,
                      PDU_REJECT_USER_CALLED_AE };
    pdu_reject bad[] = {
        { 3, PDU_REJECT_SOURCE_USER, 1 },               /* no such result */
        { PDU_REJECT_TRANSIENT, 4, 1 },                 /* no such source */
        { PDU_REJECT_TRANSIENT, PDU_REJECT_SOURCE_ACSE, 3 },
        { PDU_REJECT_PERMANENT, PDU_REJECT_SOURCE_USER, 0 },
        { PDU_REJECT_TRANSIENT, PDU_REJECT_SOURCE_PRESENTATION, 8 },
    };
    cp_buf out = CP_BUF_INIT;
    pdu *p;

    (void)state;
    assert_int_equal(pdu_encode_associate_rj(&out, &rj, NULL), CP_OK);
    assert_int_equal(out.len, sizeof called_ae_rj);
    assert_memory_equal(out.data, called_ae_rj, sizeof called_ae_rj);
    p = decode_ok(out.data, out.len);
    assert_int_equal(p->reject.result, PDU_REJECT_PERMANENT);
    assert_int_equal(p->reject.source, PDU_REJECT_SOURCE_USER);
    assert_int_equal(p->reject.reason, PDU_REJECT_USER_CALLED_AE);
    assert_round_trip(p);
    pdu_destroy(p);

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t bytes[10] = { 3, 0, 0, 0, 0, 4, 0 };

        cp_buf_reset(&out);
        assert_int_equal(pdu_encode_associate_rj(&out, &bad[i], NULL), CP_ERR_INVALID);
        bytes[7] = bad[i].result;
        bytes[8] = bad[i].source;
        bytes[9] = bad[i].reason;
        decode_fails(bytes, sizeof bytes, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM);
    }

    /* Protocol version not supported, from the ACSE provider; transient congestion. */
    rj = (pdu_reject){ PDU_REJECT_PERMANENT, PDU_REJECT_SOURCE_ACSE,
                       PDU_REJECT_ACSE_PROTOCOL_VERSION };
    assert_int_equal(pdu_encode_associate_rj(&out, &rj, NULL), CP_OK);
    rj = (pdu_reject){ PDU_REJECT_TRANSIENT, PDU_REJECT_SOURCE_PRESENTATION,
                       PDU_REJECT_PRESENTATION_CONGESTION };
    assert_int_equal(pdu_encode_associate_rj(&out, &rj, NULL), CP_OK);
    cp_buf_free(&out);
}

/* ---- P-DATA-TF ---------------------------------------------------------------- */

static void test_pdata_several_pdvs(void **state)
{
    /* A command (last fragment) and two data fragments of context 3. */
    static const uint8_t bytes[] = {
        0x04, 0x00, 0x00, 0x00, 0x00, 0x1c,
        0x00, 0x00, 0x00, 0x06, 0x03, 0x03, 'C', 'M', 'D', '!',
        0x00, 0x00, 0x00, 0x04, 0x03, 0x00, 'd', '1',
        0x00, 0x00, 0x00, 0x06, 0x03, 0x02, 'd', '2', 'd', '3',
    };
    pdu_pdv pdvs[3] = {
        { 3, true, true, (const uint8_t *)"CMD!", 4 },
        { 3, false, false, (const uint8_t *)"d1", 2 },
        { 3, false, true, (const uint8_t *)"d2d3", 4 },
    };
    cp_buf out = CP_BUF_INIT;
    pdu *p = decode_ok(bytes, sizeof bytes);

    (void)state;
    assert_int_equal(p->pdata.count, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(p->pdata.pdvs[i].pc_id, 3);
        assert_int_equal(p->pdata.pdvs[i].command, pdvs[i].command);
        assert_int_equal(p->pdata.pdvs[i].last, pdvs[i].last);
        assert_int_equal(p->pdata.pdvs[i].len, pdvs[i].len);
        assert_memory_equal(p->pdata.pdvs[i].data, pdvs[i].data, pdvs[i].len);
    }
    assert_ptr_equal(p->pdata.pdvs[2].data, bytes + 30);
    pdu_destroy(p);

    assert_int_equal(pdu_encode_pdata(&out, pdvs, 3, NULL), CP_OK);
    assert_int_equal(out.len, sizeof bytes);
    assert_memory_equal(out.data, bytes, sizeof bytes);
    cp_buf_free(&out);
}

static void test_pdata_malformed(void **state)
{
    static const uint8_t even_id[] = { 4, 0, 0, 0, 0, 6, 0, 0, 0, 2, 2, 0 };
    static const uint8_t short_pdv[] = { 4, 0, 0, 0, 0, 6, 0, 0, 0, 1, 1, 0 };
    static const uint8_t long_pdv[] = { 4, 0, 0, 0, 0, 7, 0, 0, 0, 4, 1, 0, 9 };
    static const uint8_t tail[] = { 4, 0, 0, 0, 0, 9, 0, 0, 0, 2, 1, 0, 0, 0, 0 };
    pdu_pdv even = { 2, false, true, NULL, 0 };
    cp_buf out = CP_BUF_INIT;

    (void)state;
    assert_int_equal(decode_fails(even_id, sizeof even_id, CP_ERR_MALFORMED,
                                  PDU_ABORT_INVALID_PARAM), 10);
    decode_fails(short_pdv, sizeof short_pdv, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM);
    assert_int_equal(decode_fails(long_pdv, sizeof long_pdv, CP_ERR_MALFORMED,
                                  PDU_ABORT_INVALID_PARAM), 6);
    assert_int_equal(decode_fails(tail, sizeof tail, CP_ERR_MALFORMED,
                                  PDU_ABORT_INVALID_PARAM), 12);
    assert_int_equal(pdu_encode_pdata(&out, &even, 1, NULL), CP_ERR_INVALID);
    assert_int_equal(pdu_encode_pdata(&out, &even, 0, NULL), CP_ERR_INVALID);
    assert_int_equal(out.len, 0);
    cp_buf_free(&out);
}

static void test_pdv_payload_max(void **state)
{
    (void)state;
    assert_int_equal(pdu_pdv_payload_max(16384), 16378);
    assert_int_equal(pdu_pdv_payload_max(16385), 16378);
    assert_int_equal(pdu_pdv_payload_max(0), PDU_SEND_MAX - 6);
    assert_int_equal(pdu_pdv_payload_max(UINT32_MAX), PDU_SEND_MAX - 6);
    assert_int_equal(pdu_pdv_payload_max(8), 2);
    assert_int_equal(pdu_pdv_payload_max(7), 0);
    assert_int_equal(pdu_pdv_payload_max(0x1000000), PDU_SEND_MAX - 6);
}

/* A 40000-byte data set to a peer that takes 16384-byte PDUs: three PDUs. */
static void test_pdata_fragments(void **state)
{
    static uint8_t data[40000];
    cp_buf out = CP_BUF_INIT;
    size_t pos = 0, got = 0;
    int pdus = 0;

    (void)state;
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 7);
    assert_int_equal(pdu_encode_pdata_fragments(&out, 5, false, data, sizeof data, 16384,
                                                true, NULL), CP_OK);

    while (pos < out.len) {
        pdu_type type;
        uint32_t len;
        pdu *p;
        const pdu_pdv *v;

        assert_int_equal(pdu_read_header(out.data + pos, out.len - pos, 16384, &type,
                                         &len, NULL, NULL), CP_OK);
        p = decode_ok(out.data + pos, 6 + (size_t)len);
        assert_int_equal(p->pdata.count, 1);
        v = &p->pdata.pdvs[0];
        assert_int_equal(v->pc_id, 5);
        assert_false(v->command);
        assert_int_equal(v->last, got + v->len == sizeof data);
        assert_memory_equal(v->data, data + got, v->len);
        got += v->len;
        pos += 6 + (size_t)len;
        pdus++;
        pdu_destroy(p);
    }
    assert_int_equal(pdus, 3);
    assert_int_equal(got, sizeof data);

    /* An empty last fragment closes a stream; an empty middle one sends nothing. */
    cp_buf_reset(&out);
    assert_int_equal(pdu_encode_pdata_fragments(&out, 5, false, NULL, 0, 0, false, NULL),
                     CP_OK);
    assert_int_equal(out.len, 0);
    assert_int_equal(pdu_encode_pdata_fragments(&out, 5, true, NULL, 0, 0, true, NULL),
                     CP_OK);
    assert_int_equal(out.len, 12);
    assert_int_equal(out.data[11], PDU_PDV_COMMAND | PDU_PDV_LAST);
    assert_int_equal(pdu_encode_pdata_fragments(&out, 5, true, data, 10, 7, true, NULL),
                     CP_ERR_INVALID);
    assert_int_equal(out.len, 12);
    cp_buf_free(&out);
}

/* ---- user information ---------------------------------------------------------- */

static void test_user_identity(void **state)
{
    /* The 58H sub-item of a username + passcode request, from PS3.7 D.3.3.7.1. */
    static const uint8_t identity_item[] = {
        0x58, 0x00, 0x00, 0x11, 0x02, 0x01,
        0x00, 0x05, 'a', 'l', 'i', 'c', 'e',
        0x00, 0x06, 's', 'e', 'c', 'r', 'e', 't',
    };
    pdu_uid ts[1] = { { "1.2.840.10008.1.2.1" } };
    pdu_pres_ctx pc = { .id = 1, .abstract_syntax = { "1.2.840.10008.1.1" },
                        .ts_count = 1, .ts = ts };
    pdu_assoc rq = {
        .protocol_version = PDU_PROTOCOL_VERSION,
        .called_ae = "CLOUDPACS",
        .calling_ae = "MODALITY 1",
        .app_context = { PDU_APPLICATION_CONTEXT },
        .pc_count = 1,
        .pcs = &pc,
        .has_user_info = true,
        .user = {
            .has_identity_rq = true,
            .identity_rq = { PDU_IDENTITY_USERNAME_PASSCODE, true,
                             (const uint8_t *)"alice", 5, (const uint8_t *)"secret", 6 },
        },
    };
    cp_buf out = CP_BUF_INIT;
    pdu *p;

    (void)state;
    assert_int_equal(pdu_encode_associate_rq(&out, &rq, NULL), CP_OK);
    /* The identity is the only sub-item: it ends the PDU. */
    assert_memory_equal(out.data + out.len - sizeof identity_item, identity_item,
                        sizeof identity_item);
    p = decode_ok(out.data, out.len);
    assert_string_equal(p->assoc.calling_ae, "MODALITY 1");
    assert_true(p->assoc.user.has_identity_rq);
    assert_int_equal(p->assoc.user.identity_rq.type, PDU_IDENTITY_USERNAME_PASSCODE);
    assert_true(p->assoc.user.identity_rq.response_requested);
    assert_int_equal(p->assoc.user.identity_rq.primary_len, 5);
    assert_memory_equal(p->assoc.user.identity_rq.primary, "alice", 5);
    assert_memory_equal(p->assoc.user.identity_rq.secondary, "secret", 6);
    assert_false(p->assoc.user.has_max_length);
    assert_round_trip(p);
    pdu_destroy(p);

    /* The -AC answers with a server response (a JWT's reply, say). */
    pc.result = PDU_PC_ACCEPTANCE;
    rq.user = (pdu_user_info){ .has_identity_ac = true,
                               .identity_response = (const uint8_t *)"token",
                               .identity_response_len = 5 };
    cp_buf_reset(&out);
    assert_int_equal(pdu_encode_associate_ac(&out, &rq, NULL), CP_OK);
    assert_memory_equal(out.data + out.len - 11, "\x59\x00\x00\x07\x00\x05token", 11);
    p = decode_ok(out.data, out.len);
    assert_true(p->assoc.user.has_identity_ac);
    assert_int_equal(p->assoc.user.identity_response_len, 5);
    assert_memory_equal(p->assoc.user.identity_response, "token", 5);
    assert_round_trip(p);
    pdu_destroy(p);
    cp_buf_free(&out);
}

static void test_role_selection_and_negotiation(void **state)
{
    static const uint8_t role_item[] = {
        0x54, 0x00, 0x00, 0x1d, 0x00, 0x19,
        '1', '.', '2', '.', '8', '4', '0', '.', '1', '0', '0', '0', '8', '.',
        '5', '.', '1', '.', '4', '.', '1', '.', '1', '.', '2',
        0x00, 0x01,
    };
    pdu_uid ts[2] = { { "1.2.840.10008.1.2.1" }, { "1.2.840.10008.1.2" } };
    pdu_pres_ctx pcs[2] = {
        { .id = 1, .abstract_syntax = { "1.2.840.10008.5.1.4.1.1.2" }, .ts_count = 2,
          .ts = ts },
        { .id = 3, .abstract_syntax = { "1.2.840.10008.5.1.4.1.2.2.3" }, .ts_count = 1,
          .ts = ts },
    };
    pdu_role role = { { "1.2.840.10008.5.1.4.1.1.2" }, 0, 1 };
    pdu_ext_neg ext = { { "1.2.840.10008.5.1.4.1.2.2.1" }, (const uint8_t *)"\1\1\0", 3 };
    pdu_uid related[2] = { { "1.2.840.10008.5.1.4.1.1.2" }, { "1.2.3" } };
    pdu_common_ext_neg common = { 0, { "1.2.840.10008.5.1.4.1.1.2.1" },
                                  { "1.2.840.10008.4.2" }, 2, related };
    pdu_assoc rq = {
        .protocol_version = PDU_PROTOCOL_VERSION,
        .called_ae = "  PACS",
        .calling_ae = "CT",
        .app_context = { PDU_APPLICATION_CONTEXT },
        .pc_count = 2,
        .pcs = pcs,
        .has_user_info = true,
        .user = {
            .has_max_length = true, .max_length = 0,
            .impl_class_uid = { "1.2.3.4.5" },
            .has_async_window = true, .max_ops_invoked = 5, .max_ops_performed = 1,
            .role_count = 1, .roles = &role,
            .ext_neg_count = 1, .ext_neg = &ext,
            .common_ext_neg_count = 1, .common_ext_neg = &common,
        },
    };
    cp_buf out = CP_BUF_INIT;
    pdu *p;
    const pdu_user_info *u;

    (void)state;
    assert_int_equal(pdu_encode_associate_rq(&out, &rq, NULL), CP_OK);
    assert_non_null(memmem(out.data, out.len, role_item, sizeof role_item));
    assert_memory_equal(out.data + 10, "PACS            CT              ", 32);
    p = decode_ok(out.data, out.len);
    u = &p->assoc.user;
    assert_string_equal(p->assoc.called_ae, "PACS");
    assert_int_equal(p->assoc.pc_count, 2);
    assert_int_equal(p->assoc.pcs[0].ts_count, 2);
    assert_string_equal(p->assoc.pcs[0].ts[1].value, "1.2.840.10008.1.2");
    assert_int_equal(p->assoc.pcs[1].id, 3);
    assert_int_equal(u->role_count, 1);
    assert_string_equal(u->roles[0].sop_class.value, "1.2.840.10008.5.1.4.1.1.2");
    assert_int_equal(u->roles[0].scu_role, 0);
    assert_int_equal(u->roles[0].scp_role, 1);
    assert_true(u->has_async_window);
    assert_int_equal(u->max_ops_invoked, 5);
    assert_int_equal(u->ext_neg_count, 1);
    assert_int_equal(u->ext_neg[0].info_len, 3);
    assert_int_equal(u->common_ext_neg_count, 1);
    assert_string_equal(u->common_ext_neg[0].service_class.value, "1.2.840.10008.4.2");
    assert_int_equal(u->common_ext_neg[0].related_count, 2);
    assert_string_equal(u->common_ext_neg[0].related[1].value, "1.2.3");
    assert_round_trip(p);
    pdu_destroy(p);

    /* A role value other than 0 or 1 is refused both ways. */
    role.scp_role = 2;
    cp_buf_reset(&out);
    assert_int_equal(pdu_encode_associate_rq(&out, &rq, NULL), CP_ERR_INVALID);
    assert_int_equal(out.len, 0);
    role.scp_role = 1;
    assert_int_equal(pdu_encode_associate_rq(&out, &rq, NULL), CP_OK);
    {
        uint8_t *role_at = memmem(out.data, out.len, role_item, sizeof role_item);

        role_at[sizeof role_item - 1] = 2;
        decode_fails(out.data, out.len, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM);
    }
    cp_buf_free(&out);
}

/*
 * Unknown sub-items are skipped; UIDs padded with a NUL (as data elements
 * are) are accepted; repeated single sub-items are unexpected.
 */
static void test_user_info_leniency(void **state)
{
    static const uint8_t unknown[] = { 0x5F, 0x00, 0x00, 0x03, 1, 2, 3 };
    static const uint8_t max_len[] = { 0x51, 0x00, 0x00, 0x04, 0, 0, 0x40, 0 };
    cp_buf items = CP_BUF_INIT, ui = CP_BUF_INIT, rq = CP_BUF_INIT;
    pdu *p;

    (void)state;
    put_item(&items, 0x10, "1.2.840.10008.3.1.1.1\0", 22);
    put_item(&items, 0x20, "\x01\0\0\0\x30\0\0\x12" "1.2.840.10008.1.1\0"
                           "\x40\0\0\x12" "1.2.840.10008.1.2\0", 48);
    assert_int_equal(cp_buf_append(&ui, unknown, sizeof unknown), CP_OK);
    assert_int_equal(cp_buf_append(&ui, max_len, sizeof max_len), CP_OK);
    put_item(&items, 0x50, ui.data, ui.len);
    make_rq(&rq, &items);
    p = decode_ok(rq.data, rq.len);
    assert_string_equal(p->assoc.app_context.value, PDU_APPLICATION_CONTEXT);
    assert_string_equal(p->assoc.pcs[0].abstract_syntax.value, "1.2.840.10008.1.1");
    assert_string_equal(p->assoc.pcs[0].ts[0].value, "1.2.840.10008.1.2");
    assert_int_equal(p->assoc.user.max_length, 16384);
    assert_round_trip(p);
    pdu_destroy(p);

    /* The same with the maximum length twice. */
    items.len = 26 + 52;
    assert_int_equal(cp_buf_append(&ui, max_len, sizeof max_len), CP_OK);
    put_item(&items, 0x50, ui.data, ui.len);
    make_rq(&rq, &items);
    assert_int_equal(decode_fails(rq.data, rq.len, CP_ERR_MALFORMED,
                                  PDU_ABORT_UNEXPECTED_PARAM), 74 + 26 + 52 + 4 + 15);
    cp_buf_free(&items);
    cp_buf_free(&ui);
    cp_buf_free(&rq);
}

/* ---- malformed PDUs and their abort reasons ------------------------------------- */

static void test_truncated_header(void **state)
{
    pdu_type type;
    uint32_t len;
    pdu_abort_reason reason = PDU_ABORT_NOT_SPECIFIED;
    cp_error err;

    (void)state;
    cp_error_clear(&err);
    assert_int_equal(pdu_read_header(echoscu_rq, 5, PDU_LENGTH_MAX, &type, &len, &reason,
                                     &err), CP_ERR_TRUNCATED);
    assert_int_equal(reason, PDU_ABORT_INVALID_PARAM);
    decode_fails(echoscu_rq, 3, CP_ERR_TRUNCATED, PDU_ABORT_INVALID_PARAM);
    decode_fails(echoscu_rq, 0, CP_ERR_TRUNCATED, PDU_ABORT_INVALID_PARAM);
    /* A body shorter than its declared length. */
    assert_int_equal(decode_fails(echoscu_rq, sizeof echoscu_rq - 1, CP_ERR_TRUNCATED,
                                  PDU_ABORT_INVALID_PARAM), sizeof echoscu_rq - 1);
}

static void test_length_beyond_maximum(void **state)
{
    static const uint8_t big_pdata[] = { 4, 0, 0x00, 0x10, 0x00, 0x01 };
    static const uint8_t huge[] = { 4, 0, 0xFF, 0xFF, 0xFF, 0xFF };
    static const uint8_t big_rq[] = { 1, 0, 0x00, 0x10, 0x00, 0x01 };
    static const uint8_t short_rq[] = { 1, 0, 0x00, 0x00, 0x00, 67 };
    static const uint8_t long_abort[] = { 7, 0, 0x00, 0x00, 0x00, 5 };
    pdu_type type;
    uint32_t len;
    pdu_abort_reason reason = PDU_ABORT_NOT_SPECIFIED;
    cp_error err;

    (void)state;
    cp_error_clear(&err);
    assert_int_equal(pdu_read_header(big_pdata, 6, PDU_RECEIVE_MAX_DEFAULT, &type, &len,
                                     &reason, &err), CP_ERR_LIMIT);
    assert_int_equal(reason, PDU_ABORT_INVALID_PARAM);
    assert_int_equal(err.offset, 2);
    assert_int_equal(pdu_read_header(big_pdata, 6, PDU_RECEIVE_MAX_DEFAULT + 1, &type,
                                     &len, NULL, NULL), CP_OK);
    assert_int_equal(len, PDU_RECEIVE_MAX_DEFAULT + 1);
    /* The caller's maximum is capped by PDU_LENGTH_MAX... */
    assert_int_equal(pdu_read_header(huge, 6, UINT32_MAX, &type, &len, NULL, NULL),
                     CP_ERR_LIMIT);
    /* ...and an association PDU by PDU_ASSOCIATE_MAX. */
    assert_int_equal(pdu_read_header(big_rq, 6, PDU_LENGTH_MAX, &type, &len, NULL, NULL),
                     CP_ERR_LIMIT);
    assert_int_equal(pdu_read_header(short_rq, 6, PDU_LENGTH_MAX, &type, &len, NULL,
                                     NULL), CP_ERR_MALFORMED);
    assert_int_equal(pdu_read_header(long_abort, 6, PDU_LENGTH_MAX, &type, &len, NULL,
                                     NULL), CP_ERR_MALFORMED);
    decode_fails(huge, sizeof huge, CP_ERR_LIMIT, PDU_ABORT_INVALID_PARAM);
}

static void test_unknown_pdu_type(void **state)
{
    static const uint8_t type8[] = { 8, 0, 0, 0, 0, 4, 0, 0, 0, 0 };
    static const uint8_t type0[] = { 0, 0, 0, 0, 0, 4, 0, 0, 0, 0 };

    (void)state;
    assert_int_equal(decode_fails(type8, sizeof type8, CP_ERR_UNSUPPORTED,
                                  PDU_ABORT_UNRECOGNIZED_PDU), 0);
    decode_fails(type0, sizeof type0, CP_ERR_UNSUPPORTED, PDU_ABORT_UNRECOGNIZED_PDU);
    assert_int_equal(pdu_abort_reason_for(CP_ERR_UNSUPPORTED), PDU_ABORT_UNRECOGNIZED_PDU);
    assert_int_equal(pdu_abort_reason_for(CP_ERR_MALFORMED), PDU_ABORT_INVALID_PARAM);
    assert_int_equal(pdu_abort_reason_for(CP_ERR_LIMIT), PDU_ABORT_INVALID_PARAM);
}

static void test_item_beyond_parent(void **state)
{
    uint8_t *rq = copy_of(echoscu_rq, sizeof echoscu_rq);

    (void)state;
    /* The abstract syntax claims 48 bytes of a context item that has 42 left. */
    rq[RQ_ABSTRACT + 3] = 0x30;
    assert_int_equal(decode_fails(rq, sizeof echoscu_rq, CP_ERR_MALFORMED,
                                  PDU_ABORT_INVALID_PARAM), RQ_ABSTRACT);
    /* The user information item runs past the end of the PDU. */
    memcpy(rq, echoscu_rq, sizeof echoscu_rq);
    rq[sizeof echoscu_rq - 59] = 0x3b;
    assert_int_equal(decode_fails(rq, sizeof echoscu_rq, CP_ERR_MALFORMED,
                                  PDU_ABORT_INVALID_PARAM), sizeof echoscu_rq - 62);
    /* A sub-item of the user information runs past its parent. */
    memcpy(rq, echoscu_rq, sizeof echoscu_rq);
    rq[sizeof echoscu_rq - 16] = 0x10;
    assert_int_equal(decode_fails(rq, sizeof echoscu_rq, CP_ERR_MALFORMED,
                                  PDU_ABORT_INVALID_PARAM), sizeof echoscu_rq - 19);
    cp_free(rq);
}

static void test_context_without_transfer_syntax(void **state)
{
    cp_buf items = CP_BUF_INIT, rq = CP_BUF_INIT;

    (void)state;
    put_app_context(&items);
    put_pc(&items, 1, "1.2.840.10008.1.1", NULL);
    make_rq(&rq, &items);
    assert_int_equal(decode_fails(rq.data, rq.len, CP_ERR_MALFORMED,
                                  PDU_ABORT_INVALID_PARAM), 74 + 25);

    /* Nor without an abstract syntax, nor without any context at all. */
    cp_buf_reset(&items);
    put_app_context(&items);
    put_pc(&items, 1, NULL, "1.2.840.10008.1.2");
    make_rq(&rq, &items);
    decode_fails(rq.data, rq.len, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM);
    cp_buf_reset(&items);
    put_app_context(&items);
    make_rq(&rq, &items);
    decode_fails(rq.data, rq.len, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM);
    cp_buf_free(&items);
    cp_buf_free(&rq);
}

static void test_bad_ae_titles(void **state)
{
    uint8_t *rq = copy_of(echoscu_rq, sizeof echoscu_rq);
    pdu_assoc a = { .protocol_version = 1, .called_ae = "                " };

    (void)state;
    memset(rq + RQ_CALLED_AE, ' ', 16);
    assert_int_equal(decode_fails(rq, sizeof echoscu_rq, CP_ERR_MALFORMED,
                                  PDU_ABORT_INVALID_PARAM), RQ_CALLED_AE);
    memcpy(rq, echoscu_rq, sizeof echoscu_rq);
    rq[RQ_CALLED_AE + 1] = '\\';
    decode_fails(rq, sizeof echoscu_rq, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM);
    memcpy(rq, echoscu_rq, sizeof echoscu_rq);
    rq[RQ_CALLED_AE + 16 + 7] = '\n';
    assert_int_equal(decode_fails(rq, sizeof echoscu_rq, CP_ERR_MALFORMED,
                                  PDU_ABORT_INVALID_PARAM), RQ_CALLED_AE + 16);

    /* Leading spaces are not significant. */
    memcpy(rq, echoscu_rq, sizeof echoscu_rq);
    memcpy(rq + RQ_CALLED_AE, "   A N Y        ", 16);
    {
        pdu *p = decode_ok(rq, sizeof echoscu_rq);

        assert_string_equal(p->assoc.called_ae, "A N Y");
        pdu_destroy(p);
    }

    assert_true(pdu_ae_is_valid("STORESCP", 8));
    assert_false(pdu_ae_is_valid("", 0));
    assert_false(pdu_ae_is_valid("    ", 4));
    assert_false(pdu_ae_is_valid("12345678901234567", 17));
    assert_false(pdu_ae_is_valid("A\x7f", 2));
    {
        cp_buf out = CP_BUF_INIT;
        cp_error err;

        cp_error_clear(&err);
        assert_int_equal(pdu_encode_associate_rq(&out, &a, &err), CP_ERR_INVALID);
        assert_int_equal(out.len, 0);
        assert_non_null(strstr(err.detail, "called AE"));
        cp_buf_free(&out);
    }
    cp_free(rq);
}

static void test_zero_length_uid(void **state)
{
    uint8_t *rq = copy_of(echoscu_rq, sizeof echoscu_rq);
    cp_buf items = CP_BUF_INIT, buf = CP_BUF_INIT;

    (void)state;
    /* An empty application context name at the head of the items. */
    put_item(&items, 0x10, "", 0);
    put_pc(&items, 1, "1.2.840.10008.1.1", "1.2.840.10008.1.2");
    make_rq(&buf, &items);
    assert_int_equal(decode_fails(buf.data, buf.len, CP_ERR_MALFORMED,
                                  PDU_ABORT_INVALID_PARAM), RQ_APP_CONTEXT);

    /* A transfer syntax of spaces only, and a UID with a letter. */
    memset(rq + RQ_TS + 4, ' ', 17);
    assert_int_equal(decode_fails(rq, sizeof echoscu_rq, CP_ERR_MALFORMED,
                                  PDU_ABORT_INVALID_PARAM), RQ_TS);
    memcpy(rq, echoscu_rq, sizeof echoscu_rq);
    rq[RQ_TS + 8] = 'x';
    decode_fails(rq, sizeof echoscu_rq, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM);
    cp_buf_free(&items);
    cp_buf_free(&buf);
    cp_free(rq);
}

static void test_too_many_contexts(void **state)
{
    cp_buf items = CP_BUF_INIT, rq = CP_BUF_INIT;
    pdu *p;

    (void)state;
    put_app_context(&items);
    for (int id = 1; id <= 255; id += 2)
        put_pc(&items, (uint8_t)id, "1.2.840.10008.1.1", "1.2.840.10008.1.2");
    make_rq(&rq, &items);
    p = decode_ok(rq.data, rq.len);
    assert_int_equal(p->assoc.pc_count, PDU_CONTEXTS_MAX);
    assert_round_trip(p);
    pdu_destroy(p);

    put_pc(&items, 1, "1.2.840.10008.1.1", "1.2.840.10008.1.2");
    make_rq(&rq, &items);
    decode_fails(rq.data, rq.len, CP_ERR_LIMIT, PDU_ABORT_INVALID_PARAM);

    /* Even and repeated IDs are invalid values. */
    cp_buf_reset(&items);
    put_app_context(&items);
    put_pc(&items, 2, "1.2.840.10008.1.1", "1.2.840.10008.1.2");
    make_rq(&rq, &items);
    decode_fails(rq.data, rq.len, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM);
    cp_buf_reset(&items);
    put_app_context(&items);
    put_pc(&items, 7, "1.2.840.10008.1.1", "1.2.840.10008.1.2");
    put_pc(&items, 7, "1.2.840.10008.1.1", "1.2.840.10008.1.2");
    make_rq(&rq, &items);
    decode_fails(rq.data, rq.len, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM);
    cp_buf_free(&items);
    cp_buf_free(&rq);
}

static void test_unrecognized_and_unexpected_items(void **state)
{
    cp_buf items = CP_BUF_INIT, rq = CP_BUF_INIT;

    (void)state;
    /* An item type PS3.8 does not define: unrecognized parameter. */
    put_app_context(&items);
    put_pc(&items, 1, "1.2.840.10008.1.1", "1.2.840.10008.1.2");
    put_item(&items, 0x60, "x", 1);
    make_rq(&rq, &items);
    assert_int_equal(decode_fails(rq.data, rq.len, CP_ERR_MALFORMED,
                                  PDU_ABORT_UNRECOGNIZED_PARAM), 74 + 25 + 50);

    /* An -AC presentation context in an -RQ: unexpected parameter. */
    cp_buf_reset(&items);
    put_app_context(&items);
    put_item(&items, 0x21, "\x01\0\0\0", 4);
    make_rq(&rq, &items);
    decode_fails(rq.data, rq.len, CP_ERR_MALFORMED, PDU_ABORT_UNEXPECTED_PARAM);

    /* Two application contexts. */
    cp_buf_reset(&items);
    put_app_context(&items);
    put_app_context(&items);
    make_rq(&rq, &items);
    decode_fails(rq.data, rq.len, CP_ERR_MALFORMED, PDU_ABORT_UNEXPECTED_PARAM);

    /* An unknown sub-item in a presentation context. */
    cp_buf_reset(&items);
    put_app_context(&items);
    put_item(&items, 0x20, "\x01\0\0\0\x31\0\0\x01" "1", 9);
    make_rq(&rq, &items);
    decode_fails(rq.data, rq.len, CP_ERR_MALFORMED, PDU_ABORT_UNRECOGNIZED_PARAM);
    cp_buf_free(&items);
    cp_buf_free(&rq);
}

/* In an -AC, a context that is not accepted need not carry a usable syntax. */
static void test_ac_rejected_context(void **state)
{
    uint8_t *ac = copy_of(echo_ac, sizeof echo_ac);
    pdu *p;

    (void)state;
    ac[PDU_HEADER_LEN + 68 + 25 + 6] = PDU_PC_ABSTRACT_SYNTAX_NOT_SUPPORTED;
    memset(ac + PDU_HEADER_LEN + 68 + 25 + 12, 0, 17);
    p = decode_ok(ac, sizeof echo_ac);
    assert_int_equal(p->assoc.pcs[0].result, PDU_PC_ABSTRACT_SYNTAX_NOT_SUPPORTED);
    assert_int_equal(p->assoc.pcs[0].ts_count, 0);
    assert_round_trip(p);
    pdu_destroy(p);

    /* Result 5 does not exist; an accepted context needs a valid syntax. */
    ac[PDU_HEADER_LEN + 68 + 25 + 6] = 5;
    decode_fails(ac, sizeof echo_ac, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM);
    ac[PDU_HEADER_LEN + 68 + 25 + 6] = PDU_PC_ACCEPTANCE;
    decode_fails(ac, sizeof echo_ac, CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM);
    cp_free(ac);
}

/* One malformed variant: user information bytes or whole items, and the verdict. */
typedef struct malformed_case {
    const char *what;
    const char *items;          /* items after the application context, or NULL */
    size_t items_len;
    const char *user;           /* user information sub-items, or NULL */
    size_t user_len;
    cp_status status;
    pdu_abort_reason reason;
} malformed_case;

#define BYTES(s) s, sizeof s - 1
#define PC_OK "\x20\0\0\x2e\x01\0\0\0\x30\0\0\x11" "1.2.840.10008.1.1" \
              "\x40\0\0\x11" "1.2.840.10008.1.2"

static const malformed_case malformed_cases[] = {
    { "two abstract syntaxes",
      BYTES("\x20\0\0\x19\x01\0\0\0\x30\0\0\x03" "1.2\x30\0\0\x03" "1.2\x40\0\0\x03" "1.2"),
      NULL, 0, CP_ERR_MALFORMED, PDU_ABORT_UNEXPECTED_PARAM },
    { "context item of 3 bytes", BYTES("\x20\0\0\x03\x01\0\0"), NULL, 0,
      CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM },
    { "-AC context in an -RQ", BYTES("\x21\0\0\x04\x01\0\0\0"), NULL, 0,
      CP_ERR_MALFORMED, PDU_ABORT_UNEXPECTED_PARAM },
    { "two user information items", BYTES(PC_OK "\x50\0\0\0\x50\0\0\0"), NULL, 0,
      CP_ERR_MALFORMED, PDU_ABORT_UNEXPECTED_PARAM },
    { "item header cut short", BYTES(PC_OK "\x50\0"), NULL, 0,
      CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM },
    { "maximum length of 3 bytes", NULL, 0, BYTES("\x51\0\0\x03\0\x40\0"),
      CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM },
    { "asynchronous window of 5 bytes", NULL, 0, BYTES("\x53\0\0\x05\0\1\0\1\0"),
      CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM },
    { "role selection without roles", NULL, 0, BYTES("\x54\0\0\x06\0\x03" "1.2\1"),
      CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM },
    { "role selection with a byte too many", NULL, 0,
      BYTES("\x54\0\0\x08\0\x03" "1.2\1\1\0"), CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM },
    { "role UID length past the sub-item", NULL, 0, BYTES("\x54\0\0\x04\0\x09" "1."),
      CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM },
    { "role UID length cut short", NULL, 0, BYTES("\x54\0\0\x01\0"),
      CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM },
    { "implementation class UID twice", NULL, 0,
      BYTES("\x52\0\0\x03" "1.2\x52\0\0\x03" "1.2"),
      CP_ERR_MALFORMED, PDU_ABORT_UNEXPECTED_PARAM },
    { "version name with a control character", NULL, 0, BYTES("\x55\0\0\x03" "A\tB"),
      CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM },
    { "version name of 17 characters", NULL, 0,
      BYTES("\x55\0\0\x11" "ABCDEFGHIJKLMNOPQ"), CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM },
    { "user identity of 1 byte", NULL, 0, BYTES("\x58\0\0\x01\x01"),
      CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM },
    { "user identity with no secondary length", NULL, 0,
      BYTES("\x58\0\0\x05\x01\0\0\x01" "a"), CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM },
    { "user identity with a trailing byte", NULL, 0,
      BYTES("\x58\0\0\x08\x01\0\0\x01" "a\0\0\0"),
      CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM },
    { "identity response past its sub-item", NULL, 0, BYTES("\x59\0\0\x03\0\x05" "a"),
      CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM },
    { "common extended negotiation without a service class", NULL, 0,
      BYTES("\x57\0\0\x07\0\x03" "1.2\0\0"), CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM },
    { "common extended negotiation with a bad related UID", NULL, 0,
      BYTES("\x57\0\0\x10\0\x03" "1.2\0\x03" "1.2\0\x04\0\x02" "1a"),
      CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM },
    { "extended negotiation with an empty UID", NULL, 0, BYTES("\x56\0\0\x03\0\0\1"),
      CP_ERR_MALFORMED, PDU_ABORT_INVALID_PARAM },
};

static void test_malformed_table(void **state)
{
    cp_buf items = CP_BUF_INIT, rq = CP_BUF_INIT;

    (void)state;
    for (size_t i = 0; i < sizeof malformed_cases / sizeof malformed_cases[0]; i++) {
        const malformed_case *c = &malformed_cases[i];
        pdu *p = NULL;
        pdu_abort_reason reason = PDU_ABORT_NOT_SPECIFIED;

        cp_buf_reset(&items);
        put_app_context(&items);
        if (c->items != NULL) {
            assert_int_equal(cp_buf_append(&items, c->items, c->items_len), CP_OK);
        } else {
            put_pc(&items, 1, "1.2.840.10008.1.1", "1.2.840.10008.1.2");
            put_item(&items, 0x50, c->user, c->user_len);
        }
        make_rq(&rq, &items);
        if (pdu_decode(rq.data, rq.len, PDU_LENGTH_MAX, &p, &reason, NULL) != c->status ||
            reason != c->reason)
            fail_msg("%s: got abort reason %d", c->what, (int)reason);
        assert_null(p);
    }
    cp_buf_free(&items);
    cp_buf_free(&rq);
}

/* The limits on counts inside user information and contexts. */
static void test_count_limits(void **state)
{
    cp_buf items = CP_BUF_INIT, ui = CP_BUF_INIT, rq = CP_BUF_INIT, pc = CP_BUF_INIT;
    static const uint8_t bytes[] = { 4, 0, 0, 0, 0, 12, 0, 0, 0, 2, 1, 0,
                                     0, 0, 0, 2, 1, 0, 0xFF };

    (void)state;
    for (int i = 0; i <= PDU_USER_ITEMS_MAX; i++)
        put_item(&ui, 0x5E, "", 0);
    put_app_context(&items);
    put_pc(&items, 1, "1.2.840.10008.1.1", "1.2.840.10008.1.2");
    put_item(&items, 0x50, ui.data, ui.len);
    make_rq(&rq, &items);
    decode_fails(rq.data, rq.len, CP_ERR_LIMIT, PDU_ABORT_INVALID_PARAM);

    assert_int_equal(cp_buf_append(&pc, "\x01\0\0\0", 4), CP_OK);
    put_str_item(&pc, 0x30, "1.2.840.10008.1.1");
    for (int i = 0; i <= PDU_TS_PER_CONTEXT_MAX; i++)
        put_str_item(&pc, 0x40, "1.2.840.10008.1.2");
    cp_buf_reset(&items);
    put_app_context(&items);
    put_item(&items, 0x20, pc.data, pc.len);
    make_rq(&rq, &items);
    decode_fails(rq.data, rq.len, CP_ERR_LIMIT, PDU_ABORT_INVALID_PARAM);

    /* A byte after the PDU it belongs to. */
    assert_int_equal(decode_fails(bytes, sizeof bytes, CP_ERR_MALFORMED,
                                  PDU_ABORT_INVALID_PARAM), 18);
    cp_buf_free(&items);
    cp_buf_free(&ui);
    cp_buf_free(&rq);
    cp_buf_free(&pc);
}

/* Every allocation of a decode can fail; each failure is reported, nothing leaks. */
static void test_out_of_memory(void **state)
{
    pdu *p = NULL;
    long n;

    (void)state;
    for (n = 0; n < 100; n++) {
        cp_status st;

        cp_alloc_fail_after(n);
        st = pdu_decode(echoscu_rq, sizeof echoscu_rq, PDU_LENGTH_MAX, &p, NULL, NULL);
        cp_alloc_fail_after(-1);
        if (st == CP_OK)
            break;
        assert_int_equal(st, CP_ERR_NOMEM);
        assert_null(p);
    }
    assert_true(n > 0 && n < 100);
    pdu_destroy(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echoscu_rq_decoded),
        cmocka_unit_test(test_rq_outlives_its_buffer),
        cmocka_unit_test(test_ac_encoded_exactly),
        cmocka_unit_test(test_echoscu_pdata),
        cmocka_unit_test(test_release_and_abort_bytes),
        cmocka_unit_test(test_abort_from_user_reason_untested),
        cmocka_unit_test(test_reject_round_trip),
        cmocka_unit_test(test_pdata_several_pdvs),
        cmocka_unit_test(test_pdata_malformed),
        cmocka_unit_test(test_pdv_payload_max),
        cmocka_unit_test(test_pdata_fragments),
        cmocka_unit_test(test_user_identity),
        cmocka_unit_test(test_role_selection_and_negotiation),
        cmocka_unit_test(test_user_info_leniency),
        cmocka_unit_test(test_truncated_header),
        cmocka_unit_test(test_length_beyond_maximum),
        cmocka_unit_test(test_unknown_pdu_type),
        cmocka_unit_test(test_item_beyond_parent),
        cmocka_unit_test(test_context_without_transfer_syntax),
        cmocka_unit_test(test_bad_ae_titles),
        cmocka_unit_test(test_zero_length_uid),
        cmocka_unit_test(test_too_many_contexts),
        cmocka_unit_test(test_unrecognized_and_unexpected_items),
        cmocka_unit_test(test_ac_rejected_context),
        cmocka_unit_test(test_malformed_table),
        cmocka_unit_test(test_count_limits),
        cmocka_unit_test(test_out_of_memory),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

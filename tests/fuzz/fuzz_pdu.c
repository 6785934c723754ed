/*
 * fuzz_pdu.c - libFuzzer target for the upper layer PDU codec (PS3.8 9.3).
 *
 * Any bytes are decoded as one PDU. What decodes must encode, the encoding
 * must decode to equal values, and encoding those again must give the same
 * bytes: the encoder accepts everything the decoder does and loses nothing
 * the decoder kept. A decode failure must come with a detail and an abort
 * reason. The first PDV of a P-DATA-TF is also cut into fragments for a
 * small peer maximum and put back together.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/limits.h"
#include "net/pdu.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Fragments a PDV for a peer maximum taken from its first byte, and reassembles it. */
static void check_fragments(const pdu_pdv *v)
{
    uint32_t peer_max = 8 + (v->len > 0 ? v->data[0] % 64 : 0);
    cp_buf out = CP_BUF_INIT;
    size_t pos = 0, got = 0;

    if (pdu_encode_pdata_fragments(&out, v->pc_id, v->command, v->data, v->len, peer_max,
                                   true, NULL) != CP_OK)
        abort();
    while (pos < out.len) {
        pdu *p = NULL;
        uint32_t len = 0;
        pdu_type type;
        const pdu_pdv *f;

        if (pdu_read_header(out.data + pos, out.len - pos, peer_max, &type, &len, NULL,
                            NULL) != CP_OK ||
            pdu_decode(out.data + pos, 6 + (size_t)len, peer_max, &p, NULL, NULL) != CP_OK)
            abort();
        f = &p->pdata.pdvs[0];
        if (p->pdata.count != 1 || f->command != v->command || f->pc_id != v->pc_id ||
            f->len > v->len - got || memcmp(f->data, v->data + got, f->len) != 0 ||
            f->last != (got + f->len == v->len))
            abort();
        got += f->len;
        pos += 6 + (size_t)len;
        pdu_destroy(p);
    }
    if (got != v->len)
        abort();
    cp_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cp_buf first = CP_BUF_INIT, second = CP_BUF_INIT;
    pdu *p = NULL, *q = NULL;
    pdu_abort_reason reason = PDU_ABORT_NOT_SPECIFIED;
    cp_error err;

    cp_error_clear(&err);
    if (pdu_decode(data, size, PDU_LENGTH_MAX, &p, &reason, &err) != CP_OK) {
        if (p != NULL || err.detail[0] == '\0' || reason == PDU_ABORT_NOT_SPECIFIED)
            abort();
        return 0;
    }

    if (pdu_encode(&first, p, NULL) != CP_OK)
        abort();
    if (pdu_decode(first.data, first.len, PDU_LENGTH_MAX, &q, NULL, NULL) != CP_OK)
        abort();
    if (!pdu_equal(p, q))
        abort();
    if (pdu_encode(&second, q, NULL) != CP_OK || second.len != first.len ||
        memcmp(first.data, second.data, first.len) != 0)
        abort();
    /* Cutting a long PDV in 2-byte pieces would only slow the fuzzer down. */
    if (p->type == PDU_P_DATA_TF && p->pdata.pdvs[0].len <= 4096)
        check_fragments(&p->pdata.pdvs[0]);

    pdu_destroy(q);
    pdu_destroy(p);
    cp_buf_free(&second);
    cp_buf_free(&first);
    return 0;
}

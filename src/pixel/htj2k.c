/*
 * htj2k.c - High-Throughput JPEG 2000 frames (PS3.5 A.4.11 and 8.2.4, ITU
 * T.814: transfer syntaxes 1.2.840.10008.1.2.4.201, .202 and .203), decoded
 * and, losslessly, encoded through OpenJPH behind htj2k_shim.h.
 *
 * The shim hands back int32 samples; this file checks them against the
 * image and stores them in the frame's container, clamped to Bits Stored.
 * As with JPEG 2000, a codestream that used the colour transform decodes to
 * RGB whatever the data set's YBR_ICT or YBR_RCT says.
 */
#include <string.h>

#include "core/alloc.h"
#include "pixel/codec.h"
#include "pixel/htj2k_shim.h"

typedef struct {
    const px_image *img;
    int32_t *samples;
    px_htj2k_shim_header hdr;
    cp_error *err;
    cp_status st;
} htj2k_decode_ctx;

static int32_t *htj2k_alloc(void *user, const px_htj2k_shim_header *hdr)
{
    htj2k_decode_ctx *ctx = user;
    const px_image *img = ctx->img;
    size_t count;

    ctx->hdr = *hdr;
    if (hdr->width != img->columns || hdr->height != img->rows ||
        hdr->components != img->samples_per_pixel) {
        ctx->st = cp_error_set(ctx->err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET,
                               CP_ERROR_NO_TAG, "HTJ2K is %ux%u x%u, the image %ux%u x%u",
                               hdr->width, hdr->height, hdr->components, img->columns,
                               img->rows, img->samples_per_pixel);
        return NULL;
    }
    count = (size_t)hdr->width * hdr->height * hdr->components;
    ctx->samples = cp_malloc(count * sizeof(int32_t));
    if (ctx->samples == NULL)
        ctx->st = cp_error_set(ctx->err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                               "HTJ2K samples");
    return ctx->samples;
}

static void htj2k_store(const px_image *img, const int32_t *src, px_frame *frame)
{
    size_t count = (size_t)frame->rows * frame->columns * frame->samples_per_pixel;
    unsigned bits = img->bits_stored;
    int64_t lo = img->is_signed ? -((int64_t)1 << (bits - 1)) : 0;
    int64_t hi = img->is_signed ? ((int64_t)1 << (bits - 1)) - 1 : ((int64_t)1 << bits) - 1;

    for (size_t k = 0; k < count; k++) {
        int64_t v = src[k];

        v = v < lo ? lo : v > hi ? hi : v;
        switch (frame->type) {
        case PX_U8: frame->data[k] = (uint8_t)v; break;
        case PX_S8: ((int8_t *)frame->data)[k] = (int8_t)v; break;
        case PX_U16: ((uint16_t *)(void *)frame->data)[k] = (uint16_t)v; break;
        case PX_S16: ((int16_t *)(void *)frame->data)[k] = (int16_t)v; break;
        case PX_U32: ((uint32_t *)(void *)frame->data)[k] = (uint32_t)v; break;
        case PX_S32: ((int32_t *)(void *)frame->data)[k] = (int32_t)v; break;
        default: break;
        }
    }
}

/* The big-endian 16-bit value at p. */
static uint32_t be16(const uint8_t *p)
{
    return (uint32_t)p[0] << 8 | p[1];
}

static uint32_t be32(const uint8_t *p)
{
    return be16(p) << 16 | be16(p + 2);
}

/*
 * Whether SIZ (T.800 A.5.1) describes a sane grid: image and tile offsets
 * inside their extents, tiles covering the image, at most 65535 of them
 * (the Isot range), and 1 to 3 components sampled 1 to 255.
 */
static bool htj2k_siz_ok(const uint8_t *seg, size_t body)
{
    uint32_t x = be32(seg + 2), y = be32(seg + 6), xo = be32(seg + 10), yo = be32(seg + 14);
    uint32_t tw = be32(seg + 18), th = be32(seg + 22);
    uint32_t txo = be32(seg + 26), tyo = be32(seg + 30);
    uint32_t comps = be16(seg + 34);
    uint64_t tiles;

    if (x <= xo || y <= yo || tw == 0 || th == 0 || txo > xo || tyo > yo ||
        (uint64_t)txo + tw <= xo || (uint64_t)tyo + th <= yo || comps < 1 || comps > 3 ||
        body < 36 + 3 * (size_t)comps)
        return false;
    tiles = ((uint64_t)x - txo + tw - 1) / tw * (((uint64_t)y - tyo + th - 1) / th);
    if (tiles > 65535)
        return false;
    for (uint32_t c = 0; c < comps; c++) {
        const uint8_t *ssiz = seg + 36 + 3 * c;

        if ((ssiz[0] & 0x7F) > 37 || ssiz[1] == 0 || ssiz[2] == 0)
            return false;
    }
    return true;
}

/*
 * Whether a QCD or QCC segment's quantization (style byte q, `rest` bytes
 * of step sizes) covers the 3 * levels + 1 subbands of the COD with the
 * style its wavelet needs (none for 5-3, expounded for 9-7); OpenJPH
 * asserts rather than fails on a mismatch, and on the derived style.
 */
static bool htj2k_quant_ok(uint8_t q, size_t rest, uint32_t levels, bool reversible)
{
    uint32_t bands = 3 * levels + 1;

    if ((q & 0x1F) == 0 && reversible)
        return rest == bands;
    if ((q & 0x1F) == 2 && !reversible)
        return rest == 2 * (size_t)bands;
    return false;
}

/*
 * Checks the main header (SOC to the first SOT; ITU T.800 A.5 and A.6)
 * before OpenJPH sees it: Debian builds OpenJPH with its assertions on, and
 * some inconsistent headers reach an assertion (an abort) instead of an
 * error (or a crash, for tiles placed outside the image). SIZ must be
 * sane; the progression order must be one of the five of T.800 A.6.1;
 * decomposition levels of COD and COC must match the subbands of QCD and
 * QCC, which must use a style OpenJPH implements.
 */
static cp_status htj2k_check_header(const uint8_t *p, size_t len, cp_error *err)
{
    uint32_t levels = 0, components = 0;
    bool have_siz = false, have_cod = false, have_qcd = false, reversible = false;
    size_t i = 2;

    /* Two passes, since QCD, COC and QCC may come before the COD they depend on. */
    for (int pass = 0; pass < 2; pass++) {
        for (i = 2; i + 4 <= len;) {
            uint32_t marker = be16(p + i), seglen = be16(p + i + 2);
            const uint8_t *seg = p + i + 4;
            size_t body = seglen >= 2 ? seglen - 2 : 0;
            size_t c = components < 257 ? 1 : 2;

            if (marker == 0xFF90)
                break;
            if ((marker >> 8) != 0xFF || seglen < 2 || i + 2 + seglen > len)
                goto bad;
            if (pass == 0 && marker == 0xFF51) {
                if (body < 36 || !htj2k_siz_ok(seg, body))
                    goto bad;
                components = be16(seg + 34);
                have_siz = true;
            } else if (pass == 0 && marker == 0xFF52) {
                if (body < 10 || seg[1] > 4)
                    goto bad;
                levels = seg[5];
                reversible = seg[9] == 1;
                have_cod = true;
            } else if (pass == 1 && marker == 0xFF53) {
                if (body < c + 6 || seg[c + 1] != levels || (seg[c + 5] == 1) != reversible)
                    goto bad;
            } else if (pass == 1 && marker == 0xFF5C) {
                if (body < 1 || !htj2k_quant_ok(seg[0], body - 1, levels, reversible))
                    goto bad;
                have_qcd = true;
            } else if (pass == 1 && marker == 0xFF5D) {
                if (body < c + 1 ||
                    !htj2k_quant_ok(seg[c], body - c - 1, levels, reversible))
                    goto bad;
            }
            i += 2 + seglen;
        }
        if (pass == 0 && (!have_siz || !have_cod || levels > 32))
            goto bad;
    }
    if (have_qcd)
        return CP_OK;

bad:
    return cp_error_set(err, CP_ERR_MALFORMED, (int64_t)i, CP_ERROR_NO_TAG,
                        "HTJ2K main header is inconsistent or incomplete");
}

static cp_status htj2k_status(px_htj2k_shim_result r)
{
    switch (r) {
    case PX_HTJ2K_SHIM_OK: return CP_OK;
    case PX_HTJ2K_SHIM_NOMEM: return CP_ERR_NOMEM;
    case PX_HTJ2K_SHIM_UNSUPPORTED: return CP_ERR_UNSUPPORTED;
    default: return CP_ERR_MALFORMED;
    }
}

cp_status px_htj2k_decode(const px_image *img, const uint8_t *bytes, size_t len,
                          px_frame *frame, cp_error *err)
{
    htj2k_decode_ctx ctx = { img, NULL, { 0 }, err, CP_OK };
    px_sample_type type = px_image_sample_type(img);
    char msg[PX_HTJ2K_SHIM_MESSAGE_MAX];
    px_htj2k_shim_result r;
    cp_status st;

    memset(frame, 0, sizeof(*frame));
    if (img->bits_stored < 1 || img->bits_stored > 16 || px_sample_size(type) > 4 ||
        type == PX_F32)
        return cp_error_set(err, CP_ERR_UNSUPPORTED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "HTJ2K with %u bits stored", img->bits_stored);
    if (len < 4 || bytes[0] != 0xFF || bytes[1] != 0x4F || bytes[2] != 0xFF ||
        bytes[3] != 0x51)
        return cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "HTJ2K: no SOC and SIZ markers");

    st = htj2k_check_header(bytes, len, err);
    if (st != CP_OK)
        return st;

    r = px_htj2k_shim_decode(bytes, len, htj2k_alloc, &ctx, msg);
    if (r != PX_HTJ2K_SHIM_OK) {
        st = ctx.st != CP_OK ? ctx.st
                             : cp_error_set(err, htj2k_status(r), CP_ERROR_NO_OFFSET,
                                            CP_ERROR_NO_TAG, "HTJ2K: %s", msg);
        goto done;
    }

    st = px_frame_alloc(frame, img->rows, img->columns, img->samples_per_pixel, type, err);
    if (st != CP_OK)
        goto done;
    frame->bits_stored = img->bits_stored;
    frame->photometric = img->photometric;
    if (img->samples_per_pixel == 3 &&
        (ctx.hdr.color_transform || img->photometric == PX_YBR_ICT ||
         img->photometric == PX_YBR_RCT))
        frame->photometric = PX_RGB;
    htj2k_store(img, ctx.samples, frame);

done:
    if (st != CP_OK)
        px_frame_clear(frame);
    cp_free(ctx.samples);
    return st;
}

static bool htj2k_write(void *user, const uint8_t *data, size_t len)
{
    return cp_buf_append(user, data, len) == CP_OK;
}

/* One sample of the frame as an int32, whatever its container. */
static int32_t htj2k_sample(const px_frame *frame, size_t k)
{
    switch (frame->type) {
    case PX_U8: return frame->data[k];
    case PX_S8: return ((const int8_t *)frame->data)[k];
    case PX_U16: return ((const uint16_t *)(const void *)frame->data)[k];
    case PX_S16: return ((const int16_t *)(const void *)frame->data)[k];
    default: return 0;
    }
}

cp_status px_htj2k_encode_lossless(const px_frame *frame, cp_buf *out, cp_error *err)
{
    size_t count = (size_t)frame->rows * frame->columns * frame->samples_per_pixel;
    bool is_signed = frame->type == PX_S8 || frame->type == PX_S16;
    char msg[PX_HTJ2K_SHIM_MESSAGE_MAX];
    int32_t *samples = NULL;
    px_htj2k_shim_result r;
    cp_status st = CP_OK;

    if ((frame->type != PX_U8 && frame->type != PX_S8 && frame->type != PX_U16 &&
         frame->type != PX_S16) || frame->bits_stored < 1 ||
        frame->bits_stored > 8 * px_sample_size(frame->type) ||
        (frame->samples_per_pixel != 1 && frame->samples_per_pixel != 3) || count == 0)
        return cp_error_set(err, CP_ERR_UNSUPPORTED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "HTJ2K encoding of %u samples of %u bits",
                            frame->samples_per_pixel, frame->bits_stored);

    samples = cp_malloc(count * sizeof(int32_t));
    if (samples == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "HTJ2K encoder input");
    for (size_t k = 0; k < count; k++)
        samples[k] = htj2k_sample(frame, k);

    r = px_htj2k_shim_encode(samples, frame->columns, frame->rows, frame->samples_per_pixel,
                             frame->bits_stored, is_signed, htj2k_write, out, msg);
    if (r != PX_HTJ2K_SHIM_OK)
        st = cp_error_set(err, htj2k_status(r), CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "HTJ2K encoding: %s", msg);
    cp_free(samples);
    return st;
}

/*
 * jpegls.c - JPEG-LS Lossless and Near-Lossless frames (PS3.5 A.4.3 and
 * 8.2.3, ITU T.87), decoded through CharLS's C API.
 *
 * CharLS gives 1 byte per sample up to 8 bits and 2 above, pixel
 * interleaved for line and sample interleave modes and one plane per
 * component for mode none; its values are unsigned precision-bit numbers,
 * so a signed image (Pixel Representation 1) is sign-extended here from
 * Bits Stored, as PS3.5 8.2.3 expects of an encoder that was given two's
 * complement samples.
 */
#include <charls/charls.h>
#include <string.h>

#include "core/alloc.h"
#include "pixel/codec.h"

static cp_status jpegls_fail(cp_error *err, const char *what, charls_jpegls_errc ec)
{
    return cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                        "JPEG-LS %s: %s", what, charls_get_error_message(ec));
}

/* One decoded sample (component c of pixel i) from CharLS's buffer layout. */
static uint32_t jpegls_sample(const uint8_t *buf, size_t bps, bool planar, size_t pixels,
                              uint32_t samples, size_t i, uint32_t c)
{
    size_t k = planar ? (size_t)c * pixels + i : i * samples + c;

    if (bps == 1)
        return buf[k];
    return ((const uint16_t *)(const void *)buf)[k];
}

/* Stores CharLS's samples into the frame's container, masked or sign-extended. */
static void jpegls_store(const px_image *img, const uint8_t *buf, size_t bps, bool planar,
                         px_frame *frame)
{
    size_t pixels = (size_t)frame->rows * frame->columns;
    uint32_t samples = frame->samples_per_pixel;
    unsigned bits = img->bits_stored;
    uint32_t mask = bits >= 32 ? UINT32_MAX : (UINT32_C(1) << bits) - 1;
    uint32_t sign = bits >= 1 && bits <= 32 ? UINT32_C(1) << (bits - 1) : 0;

    for (size_t i = 0; i < pixels; i++) {
        for (uint32_t c = 0; c < samples; c++) {
            uint32_t v = jpegls_sample(buf, bps, planar, pixels, samples, i, c) & mask;
            int32_t s = (int32_t)v;
            size_t k = i * samples + c;

            if (img->is_signed && (v & sign))
                s = (int32_t)(v | ~mask);
            switch (frame->type) {
            case PX_U8: frame->data[k] = (uint8_t)v; break;
            case PX_S8: ((int8_t *)frame->data)[k] = (int8_t)s; break;
            case PX_U16: ((uint16_t *)(void *)frame->data)[k] = (uint16_t)v; break;
            case PX_S16: ((int16_t *)(void *)frame->data)[k] = (int16_t)s; break;
            case PX_U32: ((uint32_t *)(void *)frame->data)[k] = v; break;
            case PX_S32: ((int32_t *)(void *)frame->data)[k] = s; break;
            default: break;
            }
        }
    }
}

/*
 * Whether EOI stands within the last few bytes (writers pad fragments to an
 * even length with a byte of their choice). CharLS reads a truncated scan as
 * if zero bits followed, which can cost seconds on a frame of kilobytes
 * before it fails, so a stream without its end is refused first.
 */
static bool jpegls_has_eoi(const uint8_t *p, size_t len)
{
    for (size_t back = 2; back <= 4 && back <= len; back++) {
        if (p[len - back] == 0xFF && p[len - back + 1] == 0xD9)
            return true;
    }
    return false;
}

cp_status px_jpegls_decode(const px_image *img, const uint8_t *bytes, size_t len,
                           px_frame *frame, cp_error *err)
{
    charls_jpegls_decoder *dec;
    charls_frame_info info;
    charls_interleave_mode mode;
    charls_jpegls_errc ec;
    px_sample_type type = px_image_sample_type(img);
    uint8_t *buf = NULL;
    size_t need = 0, bps;
    cp_status st = CP_OK;

    memset(frame, 0, sizeof(*frame));
    if (type != PX_U8 && type != PX_S8 && type != PX_U16 && type != PX_S16 &&
        type != PX_U32 && type != PX_S32)
        return cp_error_set(err, CP_ERR_UNSUPPORTED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "JPEG-LS with %u bits allocated", img->bits_allocated);

    if (!jpegls_has_eoi(bytes, len))
        return cp_error_set(err, CP_ERR_TRUNCATED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "JPEG-LS stream of %zu bytes does not end with EOI", len);

    dec = charls_jpegls_decoder_create();
    if (dec == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "CharLS decoder");

    ec = charls_jpegls_decoder_set_source_buffer(dec, bytes, len);
    if (ec == CHARLS_JPEGLS_ERRC_SUCCESS)
        ec = charls_jpegls_decoder_read_header(dec);
    if (ec == CHARLS_JPEGLS_ERRC_SUCCESS)
        ec = charls_jpegls_decoder_get_frame_info(dec, &info);
    if (ec == CHARLS_JPEGLS_ERRC_SUCCESS)
        ec = charls_jpegls_decoder_get_interleave_mode(dec, &mode);
    if (ec != CHARLS_JPEGLS_ERRC_SUCCESS) {
        st = jpegls_fail(err, "header", ec);
        goto done;
    }

    if (info.width != img->columns || info.height != img->rows ||
        info.component_count != img->samples_per_pixel ||
        (info.component_count != 1 && info.component_count != 3)) {
        st = cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "JPEG-LS is %ux%u x%d, the image %ux%u x%u", info.width,
                          info.height, info.component_count, img->columns, img->rows,
                          img->samples_per_pixel);
        goto done;
    }
    if (info.bits_per_sample < 2 || info.bits_per_sample > 16 ||
        (info.bits_per_sample > 8 && px_sample_size(type) < 2)) {
        st = cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "JPEG-LS precision %d in %u bits allocated", info.bits_per_sample,
                          img->bits_allocated);
        goto done;
    }
    bps = info.bits_per_sample > 8 ? 2 : 1;

    ec = charls_jpegls_decoder_get_destination_size(dec, 0, &need);
    if (ec != CHARLS_JPEGLS_ERRC_SUCCESS) {
        st = jpegls_fail(err, "size", ec);
        goto done;
    }
    if (need != (size_t)info.width * info.height * (size_t)info.component_count * bps) {
        st = cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "JPEG-LS destination of %zu bytes", need);
        goto done;
    }

    st = px_frame_alloc(frame, info.height, info.width, (uint16_t)info.component_count, type,
                        err);
    if (st != CP_OK)
        goto done;
    buf = cp_malloc(need);
    if (buf == NULL) {
        st = cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "JPEG-LS buffer of %zu bytes", need);
        goto done;
    }

    ec = charls_jpegls_decoder_decode_to_buffer(dec, buf, need, 0);
    if (ec != CHARLS_JPEGLS_ERRC_SUCCESS) {
        st = jpegls_fail(err, "decode", ec);
        goto done;
    }

    frame->bits_stored = img->bits_stored;
    frame->photometric = img->photometric;
    jpegls_store(img, buf, bps, mode == CHARLS_INTERLEAVE_MODE_NONE && info.component_count > 1,
                 frame);

done:
    if (st != CP_OK)
        px_frame_clear(frame);
    cp_free(buf);
    charls_jpegls_decoder_destroy(dec);
    return st;
}

/*
 * rle.c - RLE Lossless (PS3.5 Annex G). A frame is a 64-byte header (the
 * number of segments, then up to 15 segment offsets, little endian) and
 * the segments, each a PackBits stream (G.3.1) of one byte plane: for every
 * sample of a pixel, the most significant byte first (G.2). The decoded
 * planes are put back into interleaved, native-endian samples.
 *
 * Segments that decode to slightly fewer bytes than a plane holds (some
 * writers drop a final run) are padded with zeros, as pydicom does; a
 * segment short by a row or more, a bad header or a wrong segment count
 * fails the frame. Nothing outside the given bytes is ever read.
 */
#include <string.h>

#include "pixel/codec.h"

#define RLE_HEADER_SIZE  64
#define RLE_SEGMENTS_MAX 15

static uint32_t rd32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/*
 * Decodes one PackBits segment into every `stride`-th byte of dst, up to
 * `count` bytes; returns how many were written. Extra output is dropped.
 */
static size_t unpack_segment(const uint8_t *in, size_t len, uint8_t *dst, size_t count,
                             size_t stride)
{
    size_t pos = 0, out = 0;

    while (pos < len && out < count) {
        unsigned n = in[pos++];

        if (n < 128) {
            size_t run = (size_t)n + 1;

            if (run > len - pos)
                run = len - pos;
            if (run > count - out)
                run = count - out;
            if (stride == 1) {
                memcpy(dst + out, in + pos, run);
            } else {
                for (size_t i = 0; i < run; i++)
                    dst[(out + i) * stride] = in[pos + i];
            }
            pos += (size_t)n + 1;
            out += run;
        } else if (n > 128) {
            size_t run = 257 - (size_t)n;

            if (pos >= len)
                break;
            if (run > count - out)
                run = count - out;
            if (stride == 1) {
                memset(dst + out, in[pos], run);
            } else {
                for (size_t i = 0; i < run; i++)
                    dst[(out + i) * stride] = in[pos];
            }
            pos++;
            out += run;
        }
    }
    return out;
}

cp_status px_rle_decode(const px_image *img, const uint8_t *bytes, size_t len, px_frame *frame,
                        cp_error *err)
{
    unsigned spp = img->samples_per_pixel;
    unsigned bps = img->bits_allocated / 8;
    size_t pixels = (size_t)img->rows * img->columns;
    uint32_t offsets[RLE_SEGMENTS_MAX + 1];
    uint32_t count;
    cp_status st;

    memset(frame, 0, sizeof *frame);
    if ((spp != 1 && spp != 3) || img->float_pixels ||
        (img->bits_allocated != 8 && img->bits_allocated != 16 && img->bits_allocated != 32))
        return cp_error_set(err, CP_ERR_UNSUPPORTED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "RLE of %u samples of %u bits", spp, img->bits_allocated);
    if (len < RLE_HEADER_SIZE)
        return cp_error_set(err, CP_ERR_MALFORMED, 0, CP_ERROR_NO_TAG,
                            "the RLE frame has %zu bytes, less than its header", len);

    count = rd32le(bytes);
    if (count != spp * bps)
        return cp_error_set(err, CP_ERR_MALFORMED, 0, CP_ERROR_NO_TAG,
                            "the RLE header has %u segments, %u expected", count, spp * bps);
    for (uint32_t i = 0; i < count; i++) {
        offsets[i] = rd32le(bytes + 4 + 4 * i);
        if (offsets[i] < RLE_HEADER_SIZE || offsets[i] > len ||
            (i > 0 && offsets[i] < offsets[i - 1]))
            return cp_error_set(err, CP_ERR_MALFORMED, 4 + 4 * (int64_t)i, CP_ERROR_NO_TAG,
                                "RLE segment %u starts at %u, outside the frame", i + 1,
                                offsets[i]);
    }
    offsets[count] = (uint32_t)(len > UINT32_MAX ? UINT32_MAX : len);

    st = px_frame_alloc(frame, img->rows, img->columns, (uint16_t)spp,
                        px_image_sample_type(img), err);
    if (st != CP_OK)
        return st;
    frame->photometric = img->photometric;

    for (uint32_t seg = 0; seg < count; seg++) {
        unsigned sample = seg / bps;
        unsigned msb_rank = seg % bps;
        /* Segment order is most significant byte first; the container is native. */
        unsigned byte = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? bps - 1 - msb_rank
                                                                    : msb_rank;
        uint8_t *dst = frame->data + (size_t)sample * bps + byte;
        size_t stride = (size_t)spp * bps;
        size_t got = unpack_segment(bytes + offsets[seg], offsets[seg + 1] - offsets[seg], dst,
                                    pixels, stride);

        if (got + img->columns <= pixels) {
            px_frame_clear(frame);
            return cp_error_set(err, CP_ERR_MALFORMED, offsets[seg], CP_ERROR_NO_TAG,
                                "RLE segment %u decodes to %zu of %zu bytes", seg + 1, got,
                                pixels);
        }
        for (size_t i = got; i < pixels; i++)
            dst[i * stride] = 0;
    }

    px_frame_fix_bits(frame, img->bits_stored);
    return CP_OK;
}

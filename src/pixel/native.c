/*
 * native.c - uncompressed pixel data (PS3.5 8.1 and 8.2, PS3.3 C.7.6.3):
 * bit-packed 1-bit frames (PS3.5 8.1.1: the first pixel in the least
 * significant bit of the first byte), 8, 16 and 32-bit integer samples and
 * Float and Double Float Pixel Data, in either byte order (OW values of
 * Explicit VR Big Endian are big endian, PS3.5 7.3), colour-by-pixel or
 * colour-by-plane (C.7.6.3.1.3), and YBR_FULL_422, which stores Y Y Cb Cr
 * for every two pixels (C.7.6.3.1.2) and is upsampled here to YBR_FULL.
 */
#include <string.h>

#include "pixel/codec.h"

static bool host_big_endian(void)
{
    return __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__;
}

static void swap_copy(uint8_t *dst, const uint8_t *src, size_t count, size_t size)
{
    for (size_t i = 0; i < count; i++) {
        for (size_t b = 0; b < size; b++)
            dst[i * size + b] = src[i * size + size - 1 - b];
    }
}

/* count samples of `size` bytes, from the source byte order into the host's. */
static void copy_samples(uint8_t *dst, const uint8_t *src, size_t count, size_t size,
                         bool big_endian)
{
    if (size == 1 || big_endian == host_big_endian())
        memcpy(dst, src, count * size);
    else
        swap_copy(dst, src, count, size);
}

/* Colour-by-plane: every plane's sample i goes to pixel i's slot. */
static void copy_planar(uint8_t *dst, const uint8_t *src, size_t pixels, unsigned spp,
                        size_t size, bool big_endian)
{
    uint8_t tmp[8];

    for (unsigned s = 0; s < spp; s++) {
        const uint8_t *plane = src + (size_t)s * pixels * size;

        for (size_t i = 0; i < pixels; i++) {
            copy_samples(tmp, plane + i * size, 1, size, big_endian);
            memcpy(dst + (i * spp + s) * size, tmp, size);
        }
    }
}

/* Y0 Y1 Cb Cr per two pixels becomes Y0 Cb Cr Y1 Cb Cr; a lone last pixel has Y Cb Cr. */
static void upsample_422(uint8_t *dst, const uint8_t *src, size_t pixels, size_t size,
                         bool big_endian)
{
    uint8_t y0[8], y1[8], cb[8], cr[8];

    for (size_t i = 0; i + 1 < pixels; i += 2) {
        const uint8_t *g = src + 2 * i * size;

        copy_samples(y0, g, 1, size, big_endian);
        copy_samples(y1, g + size, 1, size, big_endian);
        copy_samples(cb, g + 2 * size, 1, size, big_endian);
        copy_samples(cr, g + 3 * size, 1, size, big_endian);
        memcpy(dst, y0, size);
        memcpy(dst + size, cb, size);
        memcpy(dst + 2 * size, cr, size);
        memcpy(dst + 3 * size, y1, size);
        memcpy(dst + 4 * size, cb, size);
        memcpy(dst + 5 * size, cr, size);
        dst += 6 * size;
    }
    if (pixels % 2 == 1) {
        const uint8_t *g = src + (pixels - 1) * 2 * size;

        copy_samples(dst, g, 3, size, big_endian);
    }
}

cp_status px_native_decode(const px_image *img, const uint8_t *bytes, size_t len,
                           px_frame *frame, cp_error *err)
{
    size_t pixels = (size_t)img->rows * img->columns;
    unsigned spp = img->samples_per_pixel;
    px_sample_type type = px_image_sample_type(img);
    size_t size = px_sample_size(type);
    uint64_t need = px_image_native_frame_size(img);
    cp_status st;

    memset(frame, 0, sizeof *frame);
    if ((spp != 1 && spp != 3) || img->bits_stored == 0 ||
        (img->bits_allocated == 1 && spp != 1) ||
        (img->float_pixels && img->bits_allocated != 32 && img->bits_allocated != 64) ||
        img->bits_stored > img->bits_allocated ||
        (img->bits_allocated != 1 && img->bits_allocated != 8 && img->bits_allocated != 16 &&
         img->bits_allocated != 32 && !(img->float_pixels && img->bits_allocated == 64)))
        return cp_error_set(err, CP_ERR_UNSUPPORTED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "native pixel data with %u samples of %u bits", spp,
                            img->bits_allocated);
    if (len < need)
        return cp_error_set(err, CP_ERR_MALFORMED, (int64_t)len, CP_ERROR_NO_TAG,
                            "the frame has %zu bytes, %llu are needed", len,
                            (unsigned long long)need);

    st = px_frame_alloc(frame, img->rows, img->columns, (uint16_t)spp, type, err);
    if (st != CP_OK)
        return st;
    frame->photometric = img->photometric;

    if (img->bits_allocated == 1) {
        size_t n = pixels * spp;

        for (size_t i = 0; i < n; i++)
            frame->data[i] = (uint8_t)(bytes[i >> 3] >> (i & 7) & 1);
        frame->bits_stored = 1;
        return CP_OK;
    }

    if (img->photometric == PX_YBR_FULL_422 && spp == 3) {
        upsample_422(frame->data, bytes, pixels, size, img->big_endian);
        frame->photometric = PX_YBR_FULL;
    } else if (spp == 3 && img->planar_configuration == 1) {
        copy_planar(frame->data, bytes, pixels, spp, size, img->big_endian);
    } else {
        copy_samples(frame->data, bytes, pixels * spp, size, img->big_endian);
    }

    px_frame_fix_bits(frame, img->float_pixels ? (uint16_t)(size * 8) : img->bits_stored);
    return CP_OK;
}

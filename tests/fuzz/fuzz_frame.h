/*
 * fuzz_frame.h - what the frame decoders' fuzz targets share.
 *
 * Input: byte 0 is Rows - 1, byte 1 Columns - 1 (so at most 256 x 256);
 * byte 2 holds the layout (bit 0: three samples, bits 1-2: 8, 16 or 32
 * bits allocated, bit 3: signed); byte 3 is Bits Stored - 1, reduced below
 * Bits Allocated. The rest is the stored frame. A decoded frame must have
 * the size its geometry gives and no unsigned sample may carry bits above
 * the high bit; a failed one must hold nothing.
 */
#ifndef FUZZ_FRAME_H
#define FUZZ_FRAME_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pixel/codec.h"
#include "pixel/pixel.h"

#define FUZZ_FRAME_HEADER 4

/* The image the first FUZZ_FRAME_HEADER bytes describe, in the syntax uid. */
static inline void fuzz_frame_image(const uint8_t *data, const char *uid, px_image *img)
{
    static const unsigned bits[4] = { 8, 16, 32, 8 };

    memset(img, 0, sizeof *img);
    img->rows = data[0] + 1u;
    img->columns = data[1] + 1u;
    img->frames = 1;
    img->samples_per_pixel = data[2] & 1 ? 3 : 1;
    img->bits_allocated = (uint16_t)bits[data[2] >> 1 & 3];
    img->bits_stored = (uint16_t)(data[3] % img->bits_allocated + 1);
    img->high_bit = (uint16_t)(img->bits_stored - 1);
    img->is_signed = (data[2] & 8) != 0;
    img->photometric = img->samples_per_pixel == 3 ? PX_RGB : PX_MONOCHROME2;
    img->transfer_syntax = dcm_ts_lookup(uid, strlen(uid));
}

/* Aborts unless the decoder's outcome keeps the contract above; frees the frame. */
static inline void fuzz_frame_check(const px_image *img, cp_status status, px_frame *frame)
{
    size_t samples = (size_t)img->rows * img->columns * img->samples_per_pixel;

    if (status != CP_OK) {
        if (frame->data != NULL)
            abort();
        return;
    }
    if (frame->size != samples * px_sample_size(frame->type) || frame->data == NULL)
        abort();
    if (!img->is_signed && img->bits_stored < 32) {
        for (size_t i = 0; i < samples; i++) {
            uint32_t v = frame->type == PX_U8    ? frame->data[i]
                         : frame->type == PX_U16 ? ((uint16_t *)(void *)frame->data)[i]
                                                 : ((uint32_t *)(void *)frame->data)[i];
            if (v >> img->bits_stored)
                abort();
        }
    }
    px_frame_clear(frame);
}

#endif

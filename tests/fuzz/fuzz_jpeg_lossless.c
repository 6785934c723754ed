/*
 * fuzz_jpeg_lossless.c - libFuzzer target for our JPEG lossless decoder
 * (src/pixel/jpeg_lossless.c: ITU T.81 Annex H, processes 14 and 14 SV1).
 *
 * Input: byte 0 is Rows - 1, byte 1 Columns - 1 (so at most 256 x 256);
 * byte 2 holds the layout (bit 0: three samples, bits 1-2: 8, 16 or 32
 * bits allocated, 32 being refused, bit 3: signed); byte 3 is Bits Stored
 * - 1, reduced below Bits Allocated. The rest is the codestream. A decoded
 * frame must have the size its geometry gives and no sample may carry bits
 * above the high bit; a failed one must hold nothing.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pixel/codec.h"
#include "pixel/pixel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const unsigned fuzz_bits[4] = { 8, 16, 32, 8 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char uid[] = "1.2.840.10008.1.2.4.57";
    px_image img;
    px_frame frame;
    cp_error err;

    if (size < 4)
        return 0;
    memset(&img, 0, sizeof img);
    img.rows = data[0] + 1u;
    img.columns = data[1] + 1u;
    img.frames = 1;
    img.samples_per_pixel = data[2] & 1 ? 3 : 1;
    img.bits_allocated = (uint16_t)fuzz_bits[data[2] >> 1 & 3];
    img.bits_stored = (uint16_t)(data[3] % img.bits_allocated + 1);
    img.high_bit = (uint16_t)(img.bits_stored - 1);
    img.is_signed = (data[2] & 8) != 0;
    img.photometric = img.samples_per_pixel == 3 ? PX_RGB : PX_MONOCHROME2;
    img.transfer_syntax = dcm_ts_lookup(uid, sizeof uid - 1);

    if (px_jpeg_lossless_decode(&img, data + 4, size - 4, &frame, &err) != CP_OK) {
        if (frame.data != NULL)
            abort();
        return 0;
    }

    size_t samples = (size_t)img.rows * img.columns * img.samples_per_pixel;

    if (frame.size != samples * px_sample_size(frame.type) || frame.data == NULL)
        abort();
    if (!img.is_signed && img.bits_stored < 32) {
        for (size_t i = 0; i < samples; i++) {
            uint32_t v = frame.type == PX_U8    ? frame.data[i]
                         : frame.type == PX_U16 ? ((uint16_t *)(void *)frame.data)[i]
                                                : ((uint32_t *)(void *)frame.data)[i];
            if (v >> img.bits_stored)
                abort();
        }
    }
    px_frame_clear(&frame);
    return 0;
}

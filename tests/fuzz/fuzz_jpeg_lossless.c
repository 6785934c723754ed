/*
 * fuzz_jpeg_lossless.c - libFuzzer target for our JPEG lossless decoder
 * (src/pixel/jpeg_lossless.c: ITU T.81 Annex H, processes 14 and 14 SV1).
 * The input is described in fuzz_frame.h; the frame is the codestream.
 */
#include "fuzz_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    px_image img;
    px_frame frame;
    cp_error err;
    cp_status status;

    if (size < FUZZ_FRAME_HEADER)
        return 0;
    fuzz_frame_image(data, "1.2.840.10008.1.2.4.57", &img);
    memset(&frame, 0, sizeof frame);
    status = px_jpeg_lossless_decode(&img, data + FUZZ_FRAME_HEADER, size - FUZZ_FRAME_HEADER,
                                     &frame, &err);
    fuzz_frame_check(&img, status, &frame);
    return 0;
}

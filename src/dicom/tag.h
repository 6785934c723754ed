/*
 * tag.h - DICOM tags (PS3.5 section 7.1).
 *
 * A tag is kept as one 32-bit number, group in the high half and element in
 * the low half, so that tags compare in the order the standard sorts them.
 * Keyword constants for every tag of the data dictionary (DCM_PatientName and
 * so on) are generated into dict_tags.h.
 */
#ifndef DCM_TAG_H
#define DCM_TAG_H

#include <stdbool.h>
#include <stdint.h>

#define DCM_TAG(group, element) \
    ((uint32_t)(((uint32_t)(uint16_t)(group) << 16) | (uint16_t)(element)))
#define DCM_TAG_GROUP(tag)   ((uint16_t)((uint32_t)(tag) >> 16))
#define DCM_TAG_ELEMENT(tag) ((uint16_t)((uint32_t)(tag) & 0xFFFFu))

/* Items and delimiters of sequences and encapsulated pixel data (PS3.5 7.5). */
#define DCM_TAG_ITEM                 DCM_TAG(0xFFFE, 0xE000)
#define DCM_TAG_ITEM_DELIMITATION    DCM_TAG(0xFFFE, 0xE00D)
#define DCM_TAG_SEQUENCE_DELIMITATION DCM_TAG(0xFFFE, 0xE0DD)

/* The few tags the core itself acts on. */
#define DCM_TAG_FILE_META_GROUP_LENGTH DCM_TAG(0x0002, 0x0000)
#define DCM_TAG_TRANSFER_SYNTAX_UID    DCM_TAG(0x0002, 0x0010)
#define DCM_TAG_SPECIFIC_CHARACTER_SET DCM_TAG(0x0008, 0x0005)
#define DCM_TAG_EXTENDED_OFFSET_TABLE  DCM_TAG(0x7FE0, 0x0001)
#define DCM_TAG_EXTENDED_OFFSET_TABLE_LENGTHS DCM_TAG(0x7FE0, 0x0002)
#define DCM_TAG_FLOAT_PIXEL_DATA       DCM_TAG(0x7FE0, 0x0008)
#define DCM_TAG_DOUBLE_FLOAT_PIXEL_DATA DCM_TAG(0x7FE0, 0x0009)
#define DCM_TAG_PIXEL_DATA             DCM_TAG(0x7FE0, 0x0010)

/* The value length that marks an undefined length (PS3.5 7.1.1). */
#define DCM_UNDEFINED_LENGTH 0xFFFFFFFFu

/* Private tags are in odd groups above 0008 (PS3.5 7.8). */
static inline bool dcm_tag_is_private(uint32_t tag)
{
    uint16_t group = DCM_TAG_GROUP(tag);

    return (group & 1u) != 0 && group > 0x0008 && group != 0xFFFF;
}

/* A Private Creator element reserves a block: (gggg,0010) to (gggg,00FF). */
static inline bool dcm_tag_is_private_creator(uint32_t tag)
{
    uint16_t element = DCM_TAG_ELEMENT(tag);

    return dcm_tag_is_private(tag) && element >= 0x0010 && element <= 0x00FF;
}

/*
 * The Private Creator element that reserves a private data element:
 * (gggg,xxyy) is reserved by (gggg,00xx). Only meaningful for private tags
 * with element >= 0x1000.
 */
static inline uint32_t dcm_tag_private_creator_of(uint32_t tag)
{
    return DCM_TAG(DCM_TAG_GROUP(tag), DCM_TAG_ELEMENT(tag) >> 8);
}

/* Group length elements (gggg,0000) are retired except in group 0002. */
static inline bool dcm_tag_is_group_length(uint32_t tag)
{
    return DCM_TAG_ELEMENT(tag) == 0x0000;
}

#endif

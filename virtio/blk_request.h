#pragma once
// What one virtio-blk request asks for (virtio 1.2 section 5.2.6), parsed
// from a descriptor chain the queue already validated. Pure: no I/O, no
// device state; the device decides what to do with the answer.
//
// The request, seen as two byte streams (the device must not rely on how
// the driver cut them into descriptors, 2.6.4):
//   device-readable:  header {le32 type, le32 reserved (ioprio), le64 sector}
//                     [data for T_OUT, or 16-byte segments for T_DISCARD and
//                      T_WRITE_ZEROES]
//   device-writable:  [data for T_IN, or the 20-byte ID for T_GET_ID]
//                     status (u8), the very last writable byte
//
// Rules the parser applies, each answered with a status and a reason:
//   - no writable byte: there is nowhere to put a status (NoStatus);
//   - a header shorter than 16 bytes, data that is not a multiple of 512
//     bytes, bytes on the wrong side (readable data in a read, writable data
//     in a write), more data buffers than seg_max or one longer than
//     size_max, a range past the end of the disk (overflow-safe), a write
//     of any kind to a read-only disk, a GET_ID without exactly 20 bytes,
//     segments that are not a whole number of 16 bytes, more segments than
//     allowed or a segment longer than allowed: IOERR;
//   - an unknown type (including the legacy SCSI command, 2 and 3, and
//     anything with the legacy BARRIER bit), a type whose feature the driver
//     did not accept, unknown segment flags, or UNMAP on a discard: UNSUPP.
// T_FLUSH_OUT (5) is the legacy synonym of T_FLUSH (5.2.6.3). A flush's
// sector and any data it carries are ignored.

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "virtio/descriptor_chain.h"

namespace minikvm::blk {

inline constexpr uint32_t kSectorSize = 512;
inline constexpr uint32_t kHeaderSize = 16;
inline constexpr uint32_t kIdBytes = 20;      // VIRTIO_BLK_ID_BYTES
inline constexpr uint32_t kSegmentSize = 16;  // struct virtio_blk_discard_write_zeroes

// Request types (5.2.6, 5.2.6.3 for the legacy ones).
inline constexpr uint32_t kTypeIn = 0;
inline constexpr uint32_t kTypeOut = 1;
inline constexpr uint32_t kTypeScsiCmd = 2;
inline constexpr uint32_t kTypeScsiCmdOut = 3;
inline constexpr uint32_t kTypeFlush = 4;
inline constexpr uint32_t kTypeFlushOut = 5;
inline constexpr uint32_t kTypeGetId = 8;
inline constexpr uint32_t kTypeGetLifetime = 10;
inline constexpr uint32_t kTypeDiscard = 11;
inline constexpr uint32_t kTypeWriteZeroes = 13;
inline constexpr uint32_t kTypeSecureErase = 14;
inline constexpr uint32_t kTypeBarrier = 0x8000'0000;

inline constexpr uint32_t kSegmentFlagUnmap = 1;

// Status byte values.
inline constexpr uint8_t kStatusOk = 0;
inline constexpr uint8_t kStatusIoErr = 1;
inline constexpr uint8_t kStatusUnsupp = 2;

// What the device offers and the driver accepted, in the units of the
// configuration space.
struct Limits {
    uint64_t capacity = 0;  // 512-byte sectors
    bool read_only = false;
    bool flush = false;  // VIRTIO_BLK_F_FLUSH negotiated
    bool discard = false;
    bool write_zeroes = false;
    uint32_t seg_max = 0;   // data buffers per read/write
    uint32_t size_max = 0;  // bytes per data buffer
    uint32_t max_discard_sectors = 0;
    uint32_t max_discard_segments = 0;
    uint32_t max_write_zeroes_sectors = 0;
    uint32_t max_write_zeroes_segments = 0;
};

struct Segment {
    uint64_t sector = 0;
    uint32_t sectors = 0;
    bool unmap = false;
};

enum class Kind {
    NoStatus,  // no device-writable byte: complete with used length 0
    Complete,  // answered by parsing alone: `status`, and `problem` says why
    Read,
    Write,
    Flush,
    GetId,
    Discard,
    WriteZeroes,
};

struct Request {
    Kind kind = Kind::Complete;
    uint32_t type = 0;  // as the driver wrote it (0 if no header)
    uint64_t sector = 0;
    uint8_t status = kStatusOk;  // for Complete
    std::string problem;         // for Complete with an error, and NoStatus
    // Read: where the data goes; Write: where it comes from. Exactly
    // data_length bytes in chain order (the status byte is never included).
    std::vector<std::span<uint8_t>> read_buffers;
    std::vector<std::span<const uint8_t>> write_buffers;
    uint64_t data_length = 0;
    std::vector<Segment> segments;  // Discard, WriteZeroes
};

Request parse_request(const DescriptorChain& chain, const Limits& limits);

// Ends a request in guest memory: the device-writable bytes from stream
// position `produced` up to the status byte are zeroed (so everything the
// used length covers was written by the device), and `status` becomes the
// last writable byte. Returns the used length: every writable byte, or 0
// for a chain without one (where nothing is written).
uint32_t finish_request(const DescriptorChain& chain, uint8_t status, uint64_t produced);

const char* type_name(uint32_t type);

}  // namespace minikvm::blk

# cython: language_level=3
"""Declarations from liblz4's ``lz4frame.h`` (stable API only) used by ``envelope_c``."""


cdef extern from "lz4frame.h" nogil:
    ctypedef size_t LZ4F_errorCode_t

    unsigned LZ4F_isError(LZ4F_errorCode_t code)
    const char* LZ4F_getErrorName(LZ4F_errorCode_t code)

    ctypedef enum LZ4F_blockSizeID_t:
        LZ4F_default
        LZ4F_max64KB
        LZ4F_max256KB
        LZ4F_max1MB
        LZ4F_max4MB

    ctypedef enum LZ4F_blockMode_t:
        LZ4F_blockLinked
        LZ4F_blockIndependent

    ctypedef enum LZ4F_contentChecksum_t:
        LZ4F_noContentChecksum
        LZ4F_contentChecksumEnabled

    ctypedef enum LZ4F_blockChecksum_t:
        LZ4F_noBlockChecksum
        LZ4F_blockChecksumEnabled

    ctypedef enum LZ4F_frameType_t:
        LZ4F_frame
        LZ4F_skippableFrame

    ctypedef struct LZ4F_frameInfo_t:
        LZ4F_blockSizeID_t blockSizeID
        LZ4F_blockMode_t blockMode
        LZ4F_contentChecksum_t contentChecksumFlag
        LZ4F_frameType_t frameType
        unsigned long long contentSize
        unsigned dictID
        LZ4F_blockChecksum_t blockChecksumFlag

    ctypedef struct LZ4F_preferences_t:
        LZ4F_frameInfo_t frameInfo
        int compressionLevel
        unsigned autoFlush
        unsigned favorDecSpeed
        unsigned reserved[3]

    ctypedef struct LZ4F_cctx:
        pass

    ctypedef struct LZ4F_dctx:
        pass

    ctypedef struct LZ4F_compressOptions_t:
        unsigned stableSrc
        unsigned reserved[3]

    ctypedef struct LZ4F_decompressOptions_t:
        unsigned stableDst
        unsigned skipChecksums
        unsigned reserved1
        unsigned reserved0

    enum: LZ4F_VERSION
    enum: LZ4F_HEADER_SIZE_MAX

    size_t LZ4F_compressFrameBound(size_t srcSize, const LZ4F_preferences_t* preferencesPtr)
    size_t LZ4F_compressBound(size_t srcSize, const LZ4F_preferences_t* prefsPtr)

    LZ4F_errorCode_t LZ4F_createCompressionContext(LZ4F_cctx** cctxPtr, unsigned version)
    LZ4F_errorCode_t LZ4F_freeCompressionContext(LZ4F_cctx* cctx)
    size_t LZ4F_compressBegin(LZ4F_cctx* cctx, void* dstBuffer, size_t dstCapacity,
                              const LZ4F_preferences_t* prefsPtr)
    size_t LZ4F_compressUpdate(LZ4F_cctx* cctx, void* dstBuffer, size_t dstCapacity,
                               const void* srcBuffer, size_t srcSize,
                               const LZ4F_compressOptions_t* cOptPtr)
    size_t LZ4F_flush(LZ4F_cctx* cctx, void* dstBuffer, size_t dstCapacity,
                      const LZ4F_compressOptions_t* cOptPtr)
    size_t LZ4F_compressEnd(LZ4F_cctx* cctx, void* dstBuffer, size_t dstCapacity,
                            const LZ4F_compressOptions_t* cOptPtr)

    LZ4F_errorCode_t LZ4F_createDecompressionContext(LZ4F_dctx** dctxPtr, unsigned version)
    LZ4F_errorCode_t LZ4F_freeDecompressionContext(LZ4F_dctx* dctx)
    void LZ4F_resetDecompressionContext(LZ4F_dctx* dctx)
    size_t LZ4F_getFrameInfo(LZ4F_dctx* dctx, LZ4F_frameInfo_t* frameInfoPtr,
                             const void* srcBuffer, size_t* srcSizePtr)
    size_t LZ4F_decompress(LZ4F_dctx* dctx, void* dstBuffer, size_t* dstSizePtr,
                           const void* srcBuffer, size_t* srcSizePtr,
                           const LZ4F_decompressOptions_t* dOptPtr)

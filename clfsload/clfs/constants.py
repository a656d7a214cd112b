"""Constants of the CLFS on-target format (spec: clfs-format.md).

Section numbers in comments refer to that spec. Nothing here imports other
parts of the package, so both native twins and the format model can use it.
"""

import enum

# --- well-known 16-byte ids (§2.1): 15 zero bytes and a code byte ---------


def _well_known(code: int) -> bytes:
    return bytes(15) + bytes((code,))


INPROGRESS_ID = _well_known(0x62)  # owner of inodes parked for reconcile
BUCKET_ID = _well_known(0x63)
ROOT_ID = _well_known(0x64)  # the root's filehandle and object id
SPACETRACKER_ID = _well_known(0x65)  # never written
ORPHAN_PARENT_ID = _well_known(0x66)  # `..` of directories orphaned by reconcile
SNAPSHOTDB_ID = _well_known(0x67)  # never written

#: ids that use V1 blob names (§2.1); only the bucket is ever written
V1_NAMED_IDS = frozenset((BUCKET_ID, SPACETRACKER_ID, ORPHAN_PARENT_ID, SNAPSHOTDB_ID))

NULL_FH = bytes(24)  # parent of the root
NULL_ID = bytes(16)  # an unused indirect-tree root

ROOT_FH_LEN = 16
FH_LEN = 24
SEGMENT_ID_LEN = 16


class Btype(enum.IntEnum):
    """Object type code written in blob names and VATTR (§2.4)."""

    INVALID = 0
    REG = 1
    DIR = 2
    BLK = 3
    CHR = 4
    LNK = 5
    SOCK = 6
    FIFO = 7
    SEGMENT = 8
    INDIRECT = 9
    TOMBSTONE = 10
    SPECIAL = 11
    HLINK = 12


class Ftype(enum.IntEnum):
    """clfsload's own file type code, found only in filehandle byte 6 (§2.5)."""

    DIR = 1
    REG = 2
    LNK = 3
    BLK = 4
    CHR = 5
    SOCK = 6
    FIFO = 7


FTYPE_TO_BTYPE = {
    Ftype.DIR: Btype.DIR,
    Ftype.REG: Btype.REG,
    Ftype.LNK: Btype.LNK,
    Ftype.BLK: Btype.BLK,
    Ftype.CHR: Btype.CHR,
    Ftype.SOCK: Btype.SOCK,
    Ftype.FIFO: Btype.FIFO,
}
BTYPE_TO_FTYPE = {b: f for f, b in FTYPE_TO_BTYPE.items()}


class Obtype(enum.IntEnum):
    """Handle type codes inside an object body (§7)."""

    DATA = 2
    DIRENTS = 3
    VATTR = 4
    BMAP = 5
    NODEREG = 6
    INDIR = 7
    COR = 8
    BACK = 9
    DATABACK = 10
    SMB = 11
    EXTATTRS = 12
    TOMBSTONE = 13
    SPACEARRAY = 14
    VERSION = 15
    NAME = 16


# --- handle framing (§7) ---------------------------------------------------
HANDLE_MAGIC = 0x03016005
HANDLE_HEADER_LEN = 20  # magic, blobCount, realCount, type, reserved (u32 each)
VATTR_RECORD_LEN = 104  # the attribute record after its u32 length word
BMAP_TREE_COUNT = 4

# --- envelope (§6) -----------------------------------------------------------
ENCRYPTION_DISABLED = 0
COMPRESSION_DISABLED = 0
COMPRESSION_LZ4 = 1
ENVELOPE_LEN = 4
#: the envelope of a body stored raw: u16 encryption, u16 compression, both 0 (little-endian)
RAW_ENVELOPE = bytes(ENVELOPE_LEN)
LZ4_CHUNK = 262144  # bytes fed per compress call; one 256 KiB block each
#: no object body is larger than a data segment (8 MiB) and its handles: a
#: reader refuses an LZ4 frame that decompresses past twice that, before
#: allocating more (a hostile blob of 64 KiB could otherwise claim 16 MiB x 255)
MAX_BODY_BYTES = 2 * 8388608
#: the reason both envelope twins give for such a frame
BODY_TOO_LARGE = "envelope at offset 4: the LZ4 frame decompresses past %d bytes, more than any CLFS object"
LZ4_FRAME_HEADER = bytes.fromhex("04224d18405077")  # magic, FLG 0x40, BD 0x50, HC

# --- segmenting (§11, §12) ---------------------------------------------------
FIRST_SEGMENT_BYTES = 16384
OTHER_SEGMENT_BYTES = 8388608
DIR_OTHER_SEGMENT_BYTES = 262144
DIR_FIRST_SEGMENT_LIMIT = FIRST_SEGMENT_BYTES - 24  # room for `..` to grow 16 -> 24
DIRECT_BLOCKS = 1024  # block 0 is the inode itself
INDIR_POINTERS = 4096

# --- names and versions (§4) -------------------------------------------------
OBJ_VERSION_INITIAL = 9
SNAPSHOT_ID = 0xFFFFFFFF
NAME_VERSION_V1 = 1
NAME_VERSION_V2 = 2
TMP_PREFIX = "tmp"

# --- limits (§15) ------------------------------------------------------------
CLFS_LINK_MAX = 1023
CLFS_SYMLINK_LENGTH_MAX = 1023
#: longest directory entry name a reader accepts (bytes): CLFS, like POSIX NAME_MAX, allows 255
CLFS_NAME_MAX = 255
#: longest symlink target a reader accepts (bytes): what symlink(2) takes (PATH_MAX 4096 with the NUL);
#: the loader writes targets past CLFS_SYMLINK_LENGTH_MAX (§20.6), so that is not the reader's bound
SYMLINK_TARGET_MAX = 4095
DIRMGR_COUNT = 48
#: the reference hands out filehandle seqs from 1001 up (FMT §2.2); no seq is lower
MIN_SEQ = 1001
FH_SEQ_FIRST = 1001

# --- ext-attrs (§9.5, §9.9) --------------------------------------------------
BUCKET_FIXED_ATTRS = (
    ("bucketCurrentNameVersion", "2"),
    ("bucketNameVersion", "2"),
    ("bucketObjVersion", "2"),
)
BUCKET_UUID_KEY = "bucketUUID"
ROOT_EPOCH_ATTR = ("containeridEpoch", "2")
ROOT_UUID_KEYS = ("massUUID", "wipeEpoch")
LOGFILE_KEY_FORMAT = "logfile%03u"

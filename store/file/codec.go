package file

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/memory"
)

// A counter's key on disk is its period's start (8 bytes, big-endian, sign
// bit flipped, so that keys sort by period), then the limit, the subject and
// the address, each as a uvarint length and its bytes. Sorting by period
// lets a prune stop early.
func encodeKey(k policy.Key) []byte {
	addr, _ := k.Addr.MarshalBinary() // never fails
	b := make([]byte, 8, 8+3*binary.MaxVarintLen16+len(k.Limit)+len(k.Subject)+len(addr))
	binary.BigEndian.PutUint64(b, uint64(k.Period)^1<<63)
	for _, part := range [][]byte{[]byte(k.Limit), []byte(k.Subject), addr} {
		b = binary.AppendUvarint(b, uint64(len(part)))
		b = append(b, part...)
	}
	return b
}

func decodeKey(b []byte) (policy.Key, error) {
	var k policy.Key
	if len(b) < 8 {
		return k, errors.New("key shorter than 8 bytes")
	}
	k.Period = int64(binary.BigEndian.Uint64(b) ^ 1<<63)
	rest := b[8:]
	var parts [3][]byte
	for i := range parts {
		n, w := binary.Uvarint(rest)
		if w <= 0 || uint64(len(rest)-w) < n {
			return k, fmt.Errorf("key part %d is cut short", i)
		}
		parts[i], rest = rest[w:w+int(n)], rest[w+int(n):]
	}
	if len(rest) != 0 {
		return k, errors.New("key has trailing bytes")
	}
	k.Limit, k.Subject = string(parts[0]), string(parts[1])
	if err := k.Addr.UnmarshalBinary(parts[2]); err != nil {
		return k, fmt.Errorf("key address: %w", err)
	}
	return k, nil
}

// A counter's value is a version byte (1), then used, granted and until
// (Unix nanoseconds), 8 bytes each, big-endian.
const countVersion = 1

func encodeCount(c memory.Count) []byte {
	b := make([]byte, 1, 25)
	b[0] = countVersion
	b = binary.BigEndian.AppendUint64(b, uint64(c.Used))
	b = binary.BigEndian.AppendUint64(b, uint64(c.Granted))
	return binary.BigEndian.AppendUint64(b, uint64(c.Until.UnixNano()))
}

func decodeCount(b []byte) (memory.Count, error) {
	if len(b) != 25 || b[0] != countVersion {
		return memory.Count{}, fmt.Errorf("counter value of %d bytes, version %d; want 25 bytes, version %d", len(b), firstByte(b), countVersion)
	}
	return memory.Count{
		Used:    int64(binary.BigEndian.Uint64(b[1:])),
		Granted: int64(binary.BigEndian.Uint64(b[9:])),
		Until:   time.Unix(0, int64(binary.BigEndian.Uint64(b[17:]))),
	}, nil
}

func firstByte(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	return int(b[0])
}

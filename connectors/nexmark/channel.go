package nexmark

import (
	"math/bits"
	"strconv"
	"sync"
	"sync/atomic"
)

// nexmark-flink's bid channels: hot channels with their URLs, or one of
// NumChannels "channel-<k>".
const (
	NumChannels      = 10_000 // nexmark-flink's CHANNELS_NUMBER
	hotChannelsRatio = 2      // nexmark-flink's HOT_CHANNELS_RATIO
)

var hotChannels = [...]string{"Google", "Facebook", "Baidu", "Apple"}

// channels holds the channel names and URLs: entry j (j < 4) is hot
// channel j, entry 4+k is "channel-<k>". Entry j's name is
// blob[start[j]:mid[j]] and its URL blob[mid[j]:start[j+1]]. One string
// and two arrays of offsets instead of 20 008 strings: the garbage
// collector marks one object per cycle instead of 20 008, which mattered
// while it runs as often as it does under a generator (about 0.9 MB).
type channels struct {
	blob       string
	start, mid [len(hotChannels) + NumChannels + 1]uint32
}

// channelTablePtr is the table once built; channelTable builds it.
var (
	channelTablePtr  atomic.Pointer[channels]
	channelTableOnce sync.Once
)

// channelTable returns the table, building it on first use. Its fast
// path is one load, small enough to inline (a sync.OnceValue call was
// not).
func channelTable() *channels {
	if t := channelTablePtr.Load(); t != nil {
		return t
	}
	return firstChannelTable()
}

func firstChannelTable() *channels {
	channelTableOnce.Do(func() { channelTablePtr.Store(buildChannels()) })
	return channelTablePtr.Load()
}

func buildChannels() *channels {
	t := new(channels)
	var blob []byte
	for j := range len(hotChannels) + NumChannels {
		t.start[j] = uint32(len(blob))
		if j < len(hotChannels) {
			blob = append(blob, hotChannels[j]...)
		} else {
			blob = append(blob, "channel-"...)
			blob = strconv.AppendInt(blob, int64(j-len(hotChannels)), 10)
		}
		t.mid[j] = uint32(len(blob))
		r := NewJavaRandom(int64(j))
		blob = append(blob, "https://www.nexmark.com/"...)
		for i := 0; i < 3; i++ {
			blob = appendURLString(blob, &r)
			blob = append(blob, '/')
		}
		blob = append(blob, "item.htm?query=1"...)
		if j < len(hotChannels) {
			continue
		}
		k := j - len(hotChannels)
		if r.NextIntn(10) > 0 {
			// Math.abs(Integer.reverse(k)), int32 arithmetic (abs of
			// MinInt32 stays negative, as in Java).
			rev := int32(bits.Reverse32(uint32(k)))
			if rev < 0 {
				rev = -rev
			}
			blob = append(blob, "&channel_id="...)
			blob = strconv.AppendInt(blob, int64(rev), 10)
		}
	}
	t.start[len(hotChannels)+NumChannels] = uint32(len(blob))
	t.blob = string(blob)
	return t
}

// appendURLString appends 3 or 4 characters: '_' with probability 1/13,
// else a random lower-case letter.
func appendURLString(b []byte, r *JavaRandom) []byte {
	for n := minStringLength + r.NextIntn(5-minStringLength); n > 0; n-- {
		if r.NextIntn(13) == 0 {
			b = append(b, '_')
		} else {
			b = append(b, byte('a'+r.NextIntn(26)))
		}
	}
	return b
}

// splitmix64 is the SplitMix64 finalizer (Steele, Lea, Flood 2014).
func splitmix64(x uint64) uint64 {
	z := x + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// channelAndURL returns a bid's channel and URL, a function of its event
// id alone (see the package doc).
func channelAndURL(id int64) (channel, url string) {
	h := splitmix64(uint64(id))
	t := channelTable()
	j := int((h >> 1) & 3)
	if h&1 == 0 { // not hot: nexmark-flink's nextInt(HOT_CHANNELS_RATIO) == 0
		j = len(hotChannels) + int((h>>32)%NumChannels)
	}
	return t.blob[t.start[j]:t.mid[j]], t.blob[t.mid[j]:t.start[j+1]]
}

package nexmark

import (
	"math/bits"
	"strconv"
	"sync"
)

// nexmark-flink's bid channels: hot channels with their URLs, or one of
// NumChannels "channel-<k>".
const (
	NumChannels      = 10_000 // nexmark-flink's CHANNELS_NUMBER
	hotChannelsRatio = 2      // nexmark-flink's HOT_CHANNELS_RATIO
)

var hotChannels = [...]string{"Google", "Facebook", "Baidu", "Apple"}

// channelTable holds the channel names and URLs: entries 0..3 are the hot
// channels, entry 4+k is "channel-<k>". Built on first use (about 0.7 MB).
var channelTable = sync.OnceValue(func() *[len(hotChannels) + NumChannels][2]string {
	t := new([len(hotChannels) + NumChannels][2]string)
	for j := range t {
		r := NewJavaRandom(int64(j))
		b := []byte("https://www.nexmark.com/")
		for i := 0; i < 3; i++ {
			b = appendURLString(b, &r)
			b = append(b, '/')
		}
		b = append(b, "item.htm?query=1"...)
		if j < len(hotChannels) {
			t[j] = [2]string{hotChannels[j], string(b)}
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
			b = append(b, "&channel_id="...)
			b = strconv.AppendInt(b, int64(rev), 10)
		}
		t[j] = [2]string{"channel-" + strconv.Itoa(k), string(b)}
	}
	return t
})

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
	return t[j][0], t[j][1]
}

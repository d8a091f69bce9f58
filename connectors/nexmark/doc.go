// Package nexmark is the Nexmark event generator: a port of Apache Beam's
// Java generator (sdks/java/testing/nexmark, sources/generator, with
// NexmarkConfiguration.DEFAULT), event for event and byte for byte, plus
// nexmark-flink's bid channel and url fields.
//
// # What it owns and promises
//
// Event number n (0-based) depends on the Config and n only: EventAt(cfg, n)
// returns the same event in every process and on every machine, so a
// source split's checkpointed position is one integer, and replay after
// recovery yields identical events. Config's zero value is Beam's default.
// The package imports nothing of streamd's; engine sources wrap it.
//
// # The port
//
//   - java.util.Random is JavaRandom: the 48-bit LCG, seed scrambling,
//     next(bits), nextInt(bound) with its rejection loop, nextLong,
//     nextDouble, nextBoolean, as the JDK defines them; Math.round is
//     javaRound.
//   - Seeding: like Beam's Generator.nextEvent, every event gets its own
//     generator, new Random(eventId), where eventId = FirstEventID +
//     the event number adjusted for OutOfOrderGroupSize (with the
//     defaults, eventId = n).
//   - Kinds: eventId mod 50 is 0 for a person, 1–3 for an auction and
//     4–49 for a bid (1 : 3 : 46). Person ids start at 1000 and count the
//     persons so far; auction ids likewise; sellers and bidders are a hot
//     person (the first, resp. second, of the latest 100 persons) with
//     probability 3/4, else one of the 1000 most recent people plus 10
//     "leads"; a bid's auction is the hot one (first of the latest 100
//     auctions) with probability 1/2, else one of the 100 most recent
//     auctions plus 10 leads. Categories 10–14. Prices
//     round(10^(6u)·100) cents with u uniform in [0, 1); an auction's
//     reserve is its initial bid plus another price. Names, cities and
//     states from Beam's lists, e-mail addresses and item names from
//     Beam's nextString, credit cards as four "%04d" groups, and the extra
//     field (Beam's nextExtra) pads an event to 200, 500 or 100 bytes on
//     average; its characters are 'a' + (nextInt() % 26) with Java's
//     signed remainder, so 'H' through 'z' (including '\', which the JSON
//     escapes).
//   - Time: event n happens at BaseTimeMs + n·InterEventDelayUs/1000 ms,
//     2015-07-15T00:00:00Z + 10 ms·n by default (Beam's
//     timestampAndInterEventDelayUsForEvent with one rate; Beam's
//     useWallclockEventTime is false by default, and the wall-clock time at
//     which Beam would emit an event is not an event field). An auction
//     expires 1 + nextInt(2·horizon) ms after it starts, where horizon is
//     the time until the event 1666 events later (33 320 ms by default).
//   - Math.pow: Go's math.Pow and Java's Math.pow differ in the last bit
//     for about half of the arguments. A price depends on that bit only
//     when pow·100 lies within a hair of a half-integer, so prices use a
//     fast 10^x (two tables and a polynomial, relative error below
//     2e-15) and, where pow·100 is within 1e-12 (relative) of a
//     half-integer (about 1 in 70 000 prices), the correctly rounded 10^x
//     in 320-bit arithmetic. On 20 M arguments compared with Java 17's
//     Math.pow every price was identical; in those near-midpoint cases
//     Java's Math.pow was correctly rounded in all 283. Java's Math.pow is
//     only specified within 1 ulp, so a different JVM could in principle
//     round one of those prices differently; we have not seen one.
//
// Beam's multi-rate shapes (firstEventRate != nextEventRate), its split
// generators on parallel timelines (Beam's numEventGenerators splits share
// event numbers but not ids) and the wall-clock pacing are not ported: a
// split here is a range of event numbers of the one timeline.
//
// # How identity with Beam was established
//
// testdata/beam_events.txt and testdata/beam_digests.txt were produced by
// Beam's generator classes trimmed to this configuration and run with
// Java 17 (testdata/README.md); the tests compare 350 events field for
// field and SHA-256 digests of 2.3 M more, from event 0, 10^9 and 3·10^14.
// testdata/java_random.txt, from testdata/JavaRandomGolden.java, checks
// JavaRandom and javaRound against java.util.Random and Math.round.
// reference_test.go keeps the straightforward port, draw by draw; the
// tests and a fuzz test compare the fast generator with it for many
// configs (the golden files cover the default one), and each shortcut
// below with the code it replaces, rare paths included.
//
// # Shortcuts, each exact
//
// The generator is written for speed (about twice as fast as the
// straightforward port, 2.4 times with a Filler; BenchmarkGenerate), and
// draws exactly the values Beam draws:
//   - Jump-ahead: k steps of the 48-bit LCG are one affine map, so the
//     seeds of the next four draws are computed from one seed at once,
//     which takes the LCG's serial chain off the critical path: the extra
//     field takes four draws (24 characters) per step, and nextString two
//     letters per step when both are letters (its rejection-prone draws
//     take the plain path). The hot loops keep the seed in the top 48
//     bits of a uint64, where the wrap of uint64 arithmetic is the mod
//     2^48.
//   - nextExactString's six characters per draw are the base-26 digits of
//     |rnd| (Java's division and remainder are odd functions), read as
//     three base-676 digits from a 32-bit fixed-point fraction with three
//     multiplications, through a table per sign (checked on every int32).
//   - Prices: the fast 10^x above.
//   - The channel table is one string and offsets, not 20 008 strings for
//     the garbage collector to mark; an Event is reset field by field, not
//     by assigning a whole Event (a write barrier per string field while
//     the collector marks).
//
// # Channel and URL (nexmark-flink's extra bid fields)
//
// nexmark-flink draws a bid's channel from the bid's own Random after the
// price, which shifts the extra field away from Beam's, and builds the
// URLs from an unseeded Random, so its URLs differ from run to run. Ours
// leave Beam's random sequence alone and are a function of the event id
// alone: h = SplitMix64(eventId); if h is odd (probability 1/2, as
// nexmark-flink's HOT_CHANNELS_RATIO = 2) the channel is hot channel
// (h>>1)&3 of Google, Facebook, Baidu, Apple, else "channel-k" with
// k = (h>>32) mod 10 000. Every channel has one fixed URL, built from
// new Random(j) (j = the hot index, or 4 + k):
// "https://www.nexmark.com/" + three segments of 3–4 characters ('_' with
// probability 1/13, else a random lower-case letter) separated by '/' +
// "/item.htm?query=1", and for the 10 000 non-hot channels, when that
// Random's nextInt(10) > 0, "&channel_id=" + Math.abs(Integer.reverse(k))
// as nexmark-flink appends it. The channel names, the hot share, the
// number of channels, the URL shape and the channel_id rule are
// nexmark-flink's; the draws are not, so a bid's channel and URL differ
// from what nexmark-flink would print (which is itself not reproducible).
// The nexmark-flink BidGenerator we read (nexmark/nexmark, with channels)
// also adds FIRST_PERSON_ID to the bidder twice; Beam and we
// do not.
//
// # Costs
//
// Config.Fill (and EventAt) makes one allocation per event: its strings
// share one backing string. A Filler, and a Generator, carve the strings
// of many events out of one 8 KiB chunk instead (about one allocation per
// 90 events, and less work for the garbage collector); the strings stay
// immutable, but one that is kept keeps its whole chunk reachable, so an
// operator that keeps a few strings of many events for long should copy
// them. A Filler or Generator is for one goroutine; Config.Fill is safe
// for concurrent use. The channel table (about 0.9 MB) is built on first
// use. AppendJSON allocates nothing when dst has room.
package nexmark

package bench

import "testing"

func BenchmarkPipelineChannels(b *testing.B) { benchChannelsTyped(b) }
func BenchmarkPipelineEngine(b *testing.B)   { benchEngineTyped(b) }
func BenchmarkYAMLChannels(b *testing.B)     { benchChannelsYAML(b) }
func BenchmarkYAMLStreamd(b *testing.B)      { benchYAML(b, yamlPipeline, nil) }
func BenchmarkCheckpointOff(b *testing.B)    { benchYAML(b, checkpointPipeline(), nil) }
func BenchmarkCheckpoint100ms(b *testing.B) {
	benchYAML(b, checkpointPipeline()+checkpointing100ms, nil)
}

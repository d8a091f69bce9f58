package nexmark

import (
	"fmt"
	"image"
	"image/color"
	"io"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// The chart's size in pixels, and its resolution.
const (
	PlotWidthPx  = 1000
	PlotHeightPx = 500
	plotDPI      = 100
)

// Bar colors: streamd, the channels baseline, Flink.
var (
	colorStreamd  = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	colorChannels = color.RGBA{R: 0x9a, G: 0x9a, B: 0x9a, A: 0xff}
	colorFlink    = color.RGBA{R: 0xe6, G: 0x55, B: 0x0d, A: 0xff}
)

// Plot draws the suite's chart as a PNG of PlotWidthPx × PlotHeightPx to
// w: per query, a bar of streamd's median events per CPU-second, the
// channels baseline's beside it when it ran, and Flink's published
// events/s per core (FlinkPerCore) when there is one.
func Plot(w io.Writer, results []SuiteResult) error {
	if len(results) == 0 {
		return fmt.Errorf("nexmark bench: nothing to plot")
	}
	names := make([]string, len(results))
	streamd := make(plotter.Values, len(results))
	var channels, flink plotter.Values
	hasChannels, hasFlink := false, false
	for i, r := range results {
		names[i] = r.Query
		streamd[i] = r.Streamd.EventsPerCPUSecond.Median
		var c, f float64
		if r.Baseline != nil {
			c, hasChannels = r.Baseline.EventsPerCPUSecond.Median, true
		}
		if r.FlinkPerCoreEventsPerSecond != nil {
			f, hasFlink = *r.FlinkPerCoreEventsPerSecond, true
		}
		channels = append(channels, c)
		flink = append(flink, f)
	}

	p := plot.New()
	p.Title.Text = "Nexmark: events per CPU-second"
	p.Y.Label.Text = "events per CPU-second"
	p.Y.Tick.Marker = plot.TickerFunc(func(min, max float64) []plot.Tick {
		ticks := plot.DefaultTicks{}.Ticks(min, max)
		for i := range ticks {
			if ticks[i].Label != "" {
				ticks[i].Label = human(ticks[i].Value)
			}
		}
		return ticks
	})
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.XOffs = vg.Points(10)

	type series struct {
		label  string
		values plotter.Values
		color  color.Color
	}
	all := []series{{"streamd", streamd, colorStreamd}}
	if hasChannels {
		all = append(all, series{"Go goroutines and channels (same process)", channels, colorChannels})
	}
	if hasFlink {
		all = append(all, series{"Flink 1.13, published events/s per core", flink, colorFlink})
	}
	// Bars are placed in data units: query i's group spans i ± 0.4, each
	// bar 0.8/len(all) wide. BarChart takes its width in points, so that
	// is converted with the plot area's approximate width (the canvas
	// less the axis and margins).
	n, m := float64(len(results)), float64(len(all))
	p.X.Min, p.X.Max = -0.5, n-0.5
	barData := 0.8 / m
	areaPt := float64(PlotWidthPx)/plotDPI*float64(vg.Inch) - 90
	width := vg.Length(barData * areaPt / n * 0.95)
	top := 0.0
	for k, s := range all {
		bars, err := plotter.NewBarChart(s.values, width)
		if err != nil {
			return fmt.Errorf("nexmark bench: cannot plot %s: %w", s.label, err)
		}
		bars.Color = s.color
		bars.LineStyle.Width = 0
		bars.XMin = -0.4 + barData*(float64(k)+0.5)
		p.Add(bars)
		p.Legend.Add(s.label, bars)

		// The value above each bar.
		var xys plotter.XYs
		var texts []string
		for i, v := range s.values {
			if v > 0 {
				xys = append(xys, plotter.XY{X: float64(i) + bars.XMin, Y: v})
				texts = append(texts, human(v))
				top = max(top, v)
			}
		}
		if len(xys) > 0 {
			labels, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: texts})
			if err != nil {
				return fmt.Errorf("nexmark bench: cannot label %s: %w", s.label, err)
			}
			for i := range labels.TextStyle {
				labels.TextStyle[i].XAlign = draw.XCenter
				labels.TextStyle[i].Font.Size = vg.Points(9)
			}
			labels.Offset = vg.Point{Y: vg.Points(3)}
			p.Add(labels)
		}
	}
	// Room above the tallest bar for its label and the legend.
	p.Y.Min, p.Y.Max = 0, top*1.3
	p.NominalX(names...)

	img := image.NewRGBA(image.Rect(0, 0, PlotWidthPx, PlotHeightPx))
	c := vgimg.NewWith(vgimg.UseImage(img), vgimg.UseDPI(plotDPI))
	p.Draw(draw.New(c))
	if _, err := (vgimg.PngCanvas{Canvas: c}).WriteTo(w); err != nil {
		return fmt.Errorf("nexmark bench: cannot write the chart: %w", err)
	}
	return nil
}

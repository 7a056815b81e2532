using System.Diagnostics;
using Spectre.Console;
using VptSharp.Data.Segmentation;

namespace VptSharp.Cli;

/// <summary>`vpt data make seg-shapes`: the procedural segmentation task.</summary>
internal static class SegmentDataCommands
{
    public static int MakeSegShapes(string outDir, int seed)
    {
        var clock = Stopwatch.StartNew();
        var sizes = SegShapesTask.DefaultSizes;
        string dir = SegShapesWriter.Write(outDir, seed, sizes);
        AnsiConsole.MarkupLine($"{SegShapesTask.Name}: {sizes.Train} train / {sizes.Val} val / {sizes.Test} test images of {SegShapesTask.Size}×{SegShapesTask.Size} px, " +
            $"{SegShapesTask.Classes.Count} classes ({Markup.Escape(string.Join(", ", SegShapesTask.Classes))}) in {clock.Elapsed.TotalSeconds:F1} s under {Markup.Escape(dir)} " +
            $"(train/, val/, test/ each with images/ and masks/; classes.txt)");
        return 0;
    }
}

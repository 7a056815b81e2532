using SkiaSharp;
using VptSharp.IO;

namespace VptSharp.Data.MiniSuite;

/// <summary>Where one written task's files are.</summary>
public sealed record MiniTaskFiles(string Dir, string Train, string Val, string TrainVal, string Test);

/// <summary>
/// Writes mini-suite tasks in the prepared VTAB-1k layout: DIR/&lt;task&gt;/images/*.png plus the list files
/// train800.txt, val200.txt, train800val200.txt and test.txt ("images/x.png label", relative to the task folder).
/// File names carry the split sizes, so other sizes give e.g. train20.txt. Output is byte-identical for a seed.
/// </summary>
public static class MiniSuiteWriter
{
    /// <summary>The data folder of the shipped suites/mini.json, relative to suites/ (i.e. REPO/data/mini).</summary>
    public const string DefaultRoot = "../data/mini";

    public static string TrainFile(MiniSplitSizes s) => $"train{s.Train}.txt";
    public static string ValFile(MiniSplitSizes s) => $"val{s.Val}.txt";
    public static string TrainValFile(MiniSplitSizes s) => $"train{s.Train}val{s.Val}.txt";
    public const string TestFile = "test.txt";

    /// <summary>
    /// Generates every image of <paramref name="task"/> into a temporary folder beside the target, then swaps it in,
    /// so DIR/&lt;task&gt; is either the old complete task or the new one. <paramref name="progress"/> receives the
    /// number of images written so far (from worker threads).
    /// </summary>
    public static MiniTaskFiles Write(MiniTask task, string outDir, MiniSplitSizes? sizes = null, Action<int>? progress = null, int threads = 0)
    {
        sizes ??= new MiniSplitSizes();
        string final = Path.GetFullPath(Path.Combine(outDir, task.Name));
        string tmp = AtomicFile.TempPathFor(final);
        Directory.CreateDirectory(Path.Combine(tmp, "images"));
        try
        {
            var jobs = Enum.GetValues<MiniSplit>().SelectMany(s => Enumerable.Range(0, sizes.Of(s)).Select(i => (Split: s, Index: i))).ToArray();
            var labels = Enum.GetValues<MiniSplit>().ToDictionary(s => s, s => new int[sizes.Of(s)]);
            int done = 0;
            void Run(int j)
            {
                var (split, index) = jobs[j];
                var sample = task.Generate(split, index);
                labels[split][index] = sample.Label;
                File.WriteAllBytes(Path.Combine(tmp, ImagePath(split, index)), EncodePng(sample.Image));
                progress?.Invoke(Interlocked.Increment(ref done));
            }
            // the first sample alone: a missing font or dataset fails with its own message, not an AggregateException
            if (jobs.Length > 0) Run(0);
            Parallel.For(1, jobs.Length, new ParallelOptions { MaxDegreeOfParallelism = threads > 0 ? threads : Environment.ProcessorCount }, Run);

            string Lines(MiniSplit s) => string.Concat(labels[s].Select((l, i) => $"{ImagePath(s, i)} {l}\n"));
            File.WriteAllText(Path.Combine(tmp, TrainFile(sizes)), Lines(MiniSplit.Train));
            File.WriteAllText(Path.Combine(tmp, ValFile(sizes)), Lines(MiniSplit.Val));
            File.WriteAllText(Path.Combine(tmp, TrainValFile(sizes)), Lines(MiniSplit.Train) + Lines(MiniSplit.Val));
            File.WriteAllText(Path.Combine(tmp, TestFile), Lines(MiniSplit.Test));

            AtomicFile.ReplaceDirectory(tmp, final);
        }
        finally
        {
            if (Directory.Exists(tmp)) Directory.Delete(tmp, recursive: true);
        }
        return new MiniTaskFiles(final, Path.Combine(final, TrainFile(sizes)), Path.Combine(final, ValFile(sizes)),
            Path.Combine(final, TrainValFile(sizes)), Path.Combine(final, TestFile));
    }

    /// <summary>"images/train_0012.png": the path of a sample, relative to its task folder.</summary>
    public static string ImagePath(MiniSplit split, int index) => $"images/{split.ToString().ToLowerInvariant()}_{index:D4}.png";

    /// <summary>The suite descriptor (suites/mini.json) for tasks written with the default sizes under <paramref name="root"/>.</summary>
    public static Suite Descriptor(string root = DefaultRoot)
    {
        var s = new MiniSplitSizes();
        return new Suite
        {
            Name = "mini", Root = root,
            Tasks = MiniTasks.Names.Select(n =>
            {
                var t = MiniTasks.Create(n); // constructors load nothing, so this needs no fonts or data
                return new SuiteTask
                {
                    Name = n, Group = t.Group, Classes = t.Classes.Count,
                    Train = $"{n}/{TrainFile(s)}", Val = $"{n}/{ValFile(s)}", TrainVal = $"{n}/{TrainValFile(s)}", Test = $"{n}/{TestFile}",
                };
            }).ToList(),
        };
    }

    public static byte[] EncodePng(RgbImage img)
    {
        using var bmp = new SKBitmap(new SKImageInfo(img.Width, img.Height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        var dst = bmp.GetPixelSpan();
        for (int i = 0; i < img.Width * img.Height; i++)
        {
            dst[4 * i] = img.Pixels[3 * i]; dst[4 * i + 1] = img.Pixels[3 * i + 1]; dst[4 * i + 2] = img.Pixels[3 * i + 2]; dst[4 * i + 3] = 255;
        }
        using var data = bmp.Encode(SKEncodedImageFormat.Png, 100) ?? throw new InvalidOperationException("SkiaSharp could not encode a PNG");
        return data.ToArray();
    }
}

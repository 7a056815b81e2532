using System.CommandLine;
using System.Text.Json;
using Spectre.Console;
using VptSharp.IO;
using VptSharp.Analysis;
using VptSharp.Checkpoints;
using VptSharp.Data;
using VptSharp.Inference;
using VptSharp.Tuning;

namespace VptSharp.Cli;

internal static class AnalysisCommands
{

    public static Command Tsne()
    {
        var c = new Command("tsne", "t-SNE map of the features a task's head sees, coloured by class: a PNG plus a JSON of the 2-D points");
        var task = new Option<string>("--task", "-t") { Description = "task file (task.vpt)", Required = true };
        var backbone = new Option<string?>("--backbone", "-b") { Description = "local copy of the task's backbone (its sha256 must match)" };
        var data = new Option<string>("--data", "-d") { Description = "dataset (folder, list file, JSON map, fashion-mnist:test, ...)", Required = true };
        var maxImages = new Option<int>("--max-images") { Description = "class-stratified random subset of at most this many images (t-SNE is O(n²))", DefaultValueFactory = _ => 1000 };
        var perplexity = new Option<double>("--perplexity") { Description = "t-SNE perplexity (lowered to (n - 1) / 3 for small subsets)", DefaultValueFactory = _ => 30 };
        var iterations = new Option<int>("--iterations") { Description = "t-SNE gradient-descent iterations", DefaultValueFactory = _ => 1000 };
        var seed = new Option<int>("--seed") { Description = "seed of the subset and of the t-SNE initialisation", DefaultValueFactory = _ => 0 };
        var output = new Option<string>("--out", "-o") { Description = "output PNG; the points go to the same name with .json", Required = true };
        foreach (var o in new Option[] { task, backbone, data, maxImages, perplexity, iterations, seed, output, Common.BatchSize, Common.SkipBad, Common.Threads, Common.Device })
            c.Options.Add(o);
        c.SetAction(r => Common.Run(() =>
        {
            Common.ApplyThreads(r);
            int max = r.GetValue(maxImages);
            if (max < 2 || max > Analysis.Tsne.MaxPoints) throw new ArgumentException($"--max-images must be in 2..{Analysis.Tsne.MaxPoints}, got {max}");
            string taskPath = r.GetValue(task)!, spec = r.GetValue(data)!, png = r.GetValue(output)!;
            var art = TaskArtifact.Load(taskPath);
            var model = art.LoadModel(r.GetValue(backbone), taskPath);
            var all = DatasetSpec.Open(spec, art.Metadata.Classes, r.GetValue(Common.SkipBad));
            var subset = all.Subset(StratifiedSample(all.Labels(), max, r.GetValue(seed)));
            if (subset.Count < 2) throw new ArgumentException($"{spec}: t-SNE needs at least 2 images, found {subset.Count}");

            var device = r.GetValue(Common.Device)!;
            model.MoveTo(Devices.Parse(device));
            float[,] features;
            using (var f = Evaluation.Features(model, subset, art.Metadata.Preprocessing, r.GetValue(Common.BatchSize), device))
            {
                var flat = f.data<float>().ToArray();
                features = new float[f.shape[0], f.shape[1]];
                Buffer.BlockCopy(flat, 0, features, 0, flat.Length * sizeof(float));
            }

            double perp = r.GetValue(perplexity);
            double usable = (subset.Count - 1) / 3.0; // the usual rule: about 3·perplexity neighbours per point
            if (perp > usable)
            {
                AnsiConsole.MarkupLine($"[yellow]note[/]: perplexity {perp} is too high for {subset.Count} images; using {usable:G4}");
                perp = usable;
            }
            var points = Analysis.Tsne.Embed(features, new TsneOptions { Perplexity = perp, Iterations = r.GetValue(iterations), Seed = r.GetValue(seed) });

            var labels = subset.Labels();
            var classes = subset.Classes;
            Plots.ClassScatter(png, $"t-SNE of {Path.GetFileName(taskPath)} features ({subset.Count} images, perplexity {perp:G3})", points, labels, classes);
            string json = Path.ChangeExtension(png, ".json");
            AtomicFile.WriteAllText(json, JsonSerializer.Serialize(new
            {
                task = taskPath, data = spec, method = art.Metadata.Method, perplexity = perp, seed = r.GetValue(seed),
                classes,
                points = Enumerable.Range(0, subset.Count).Select(i => new
                {
                    x = points[i, 0], y = points[i, 1], label = labels[i], @class = classes[labels[i]], name = subset.NameOf(i),
                }),
            }, JsonFormat.Indented));
            AnsiConsole.MarkupLine($"wrote {Markup.Escape(png)} and {Markup.Escape(json)} ({subset.Count} images, {classes.Count} classes, {features.GetLength(1)}-d features)");
            return 0;
        }));
        return c;
    }

    /// <summary>Indices of a seeded random subset of at most <paramref name="max"/> samples in which every class keeps
    /// its share of the data (largest-remainder rounding), in dataset order.</summary>
    internal static int[] StratifiedSample(int[] labels, int max, int seed)
    {
        if (labels.Length <= max) return Enumerable.Range(0, labels.Length).ToArray();
        var rng = new Random(seed);
        var groups = Enumerable.Range(0, labels.Length).GroupBy(i => labels[i]).OrderBy(g => g.Key).Select(g => g.ToArray()).ToArray();
        var exact = groups.Select(g => (double)g.Length * max / labels.Length).ToArray();
        var quota = exact.Select(e => (int)Math.Floor(e)).ToArray();
        foreach (int k in Enumerable.Range(0, groups.Length).OrderByDescending(k => exact[k] - quota[k]).ThenBy(k => k).Take(max - quota.Sum()))
            quota[k]++;
        var chosen = new List<int>();
        for (int k = 0; k < groups.Length; k++)
        {
            rng.Shuffle(groups[k]);
            chosen.AddRange(groups[k].Take(quota[k]));
        }
        chosen.Sort();
        return chosen.ToArray();
    }
}

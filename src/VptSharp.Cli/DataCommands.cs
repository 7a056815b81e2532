using System.CommandLine;
using System.Diagnostics;
using Spectre.Console;
using VptSharp.Data;
using VptSharp.Data.MiniSuite;
using VptSharp.Data.Segmentation;

namespace VptSharp.Cli;

/// <summary>`vpt data make` (the offline VTAB-1k-shaped mini-suite) and `vpt data split` (FGVC train/val).</summary>
internal static class DataCommands
{
    public static Command Create()
    {
        var c = new Command("data", "make the offline mini-suite, or split a dataset's train.json into train/val");
        c.Subcommands.Add(Make());
        c.Subcommands.Add(Split());
        c.Subcommands.Add(VtabDataCommands.Vtab());
        c.Subcommands.Add(VtabDataCommands.Fgvc());
        return c;
    }

    static Command Make()
    {
        var task = new Argument<string>("task") { Description = $"a mini-suite task ({string.Join(", ", MiniTasks.Names)}) or all; or {SegShapesTask.Name} (segmentation: image/mask folders)" };
        var outDir = new Option<string>("--out", "-o") { Description = "data folder; each task goes to OUT/<task>/ (suites/mini.json expects data/mini at the repo root)", Required = true };
        var seed = new Option<int>("--seed") { Description = "generator seed (same seed: byte-identical files)", DefaultValueFactory = _ => 0 };
        var fontDir = new Option<string?>("--font-dir") { Description = $"glyphs: fonts to draw with (default {GlyphsTask.DefaultFontDir})" };
        var c = new Command("make", "write mini-suite tasks in the VTAB-1k layout: images/*.png, train800.txt, val200.txt, train800val200.txt, test.txt");
        c.Arguments.Add(task);
        foreach (var o in new Option[] { outDir, seed, fontDir }) c.Options.Add(o);
        c.SetAction(r => Common.Run(() =>
        {
            string name = r.GetValue(task)!, dir = r.GetValue(outDir)!;
            if (name == SegShapesTask.Name) return SegmentDataCommands.MakeSegShapes(dir, r.GetValue(seed));
            var names = name == "all" ? MiniTasks.Names : [name];
            var tasks = names.Select(n => MiniTasks.Create(n, r.GetValue(seed), r.GetValue(fontDir))).ToList();
            var sizes = new MiniSplitSizes();
            int perTask = sizes.Train + sizes.Val + sizes.Test;
            var clock = Stopwatch.StartNew();
            var written = new List<(MiniTask Task, MiniTaskFiles Files, double Seconds)>();
            void WriteAll(Func<MiniTask, Action<int>?> progressFor)
            {
                foreach (var t in tasks)
                {
                    var tc = Stopwatch.StartNew();
                    written.Add((t, MiniSuiteWriter.Write(t, dir, sizes, progressFor(t)), tc.Elapsed.TotalSeconds));
                }
            }
            if (AnsiConsole.Profile.Capabilities.Interactive)
                AnsiConsole.Progress().AutoClear(false).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
                    .Start(ctx =>
                    {
                        var bars = tasks.ToDictionary(t => t, t => ctx.AddTask(t.Name, autoStart: false, maxValue: perTask));
                        WriteAll(t => { bars[t].StartTask(); return n => bars[t].Value = n; });
                    });
            else WriteAll(_ => null);

            var table = new Table().AddColumns("task", "group", "classes", "train", "val", "test", "seconds");
            foreach (var (t, _, s) in written)
                table.AddRow(t.Name, t.Group, t.Classes.Count.ToString(), sizes.Train.ToString(), sizes.Val.ToString(), sizes.Test.ToString(), $"{s:F1}");
            AnsiConsole.Write(table);
            AnsiConsole.MarkupLine($"{written.Count} task(s), {written.Count * perTask:N0} images in {clock.Elapsed.TotalSeconds:F1} s under {Markup.Escape(Path.GetFullPath(dir))}; " +
                $"suite file: suites/mini.json (root {MiniSuiteWriter.DefaultRoot}; elsewhere pass the data folder as the suite root)");
            return 0;
        }));
        return c;
    }

    static Command Split()
    {
        var data = new Option<string>("--data", "-d") { Description = "the dataset's full train.json (path → label)", Required = true };
        var valFraction = new Option<double>("--val-fraction") { Description = "share of each class held out for val", DefaultValueFactory = _ => 0.1 };
        var seed = new Option<int>("--seed") { Description = "shuffle seed", DefaultValueFactory = _ => 42 };
        var outDir = new Option<string>("--out", "-o") { Description = "folder for train.json and val.json (image paths are rewritten relative to it)", Required = true };
        var c = new Command("split", "FGVC: split a train.json into class-stratified train.json + val.json (seeded; default 90/10)");
        foreach (var o in new Option[] { data, valFraction, seed, outDir }) c.Options.Add(o);
        c.SetAction(r => Common.Run(() =>
        {
            var res = FgvcSplit.Write(r.GetValue(data)!, r.GetValue(valFraction), r.GetValue(seed), r.GetValue(outDir)!);
            AnsiConsole.MarkupLine($"{res.Classes} classes: [bold]{res.TrainCount}[/] train → {Markup.Escape(res.TrainPath)}, [bold]{res.ValCount}[/] val → {Markup.Escape(res.ValPath)}");
            return 0;
        }));
        return c;
    }
}

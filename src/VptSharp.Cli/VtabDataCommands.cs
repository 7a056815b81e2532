using System.CommandLine;
using System.Diagnostics;
using Spectre.Console;
using VptSharp.Data.Fgvc;
using VptSharp.Data.Vtab;
using VptSharp.Data.Vtab.Archives;

namespace VptSharp.Cli;

/// <summary>`vpt data vtab` (VTAB-1k tasks from TFDS-prepared shards or the original archives) and `vpt data fgvc`
/// (FGVC JSON maps from the original releases).</summary>
internal static class VtabDataCommands
{
    public static Command Vtab()
    {
        var task = new Option<string>("--task", "-t") { Description = $"VTAB-1k task: {string.Join(", ", VtabTasks.All.Select(t => t.Name))}", Required = true };
        var from = new Option<string>("--from") { Description = "a TFDS data dir (holding e.g. cifar100/3.0.2/*.tfrecord*) or the folder an original archive was extracted to", Required = true };
        var outDir = new Option<string>("--out", "-o") { Description = "data root; the task goes to OUT/<task>/ (suites/vtab-1k.json expects data/vtab-1k)", Required = true };
        var source = new Option<string>("--source") { Description = "tfds, archive, or auto (tfds when --from holds the task's TFDS folder or .tfrecord shards)", DefaultValueFactory = _ => "auto" };
        var c = new Command("vtab", "build a VTAB-1k task in the list layout (images/, train800.txt, val200.txt, train800val200.txt, test.txt) with VTAB's splits and labels");
        foreach (var o in new Option[] { task, from, outDir, source }) c.Options.Add(o);
        c.SetAction(r => Common.Run(() =>
        {
            var t = VtabTasks.Get(r.GetValue(task)!);
            string dir = r.GetValue(from)!, kind = r.GetValue(source)!.ToLowerInvariant();
            if (kind == "auto")
                kind = Directory.Exists(Path.Combine(dir, t.Tfds)) || (Directory.Exists(dir) && Directory.EnumerateFiles(dir, "*.tfrecord*", SearchOption.AllDirectories).Any()) ? "tfds" : "archive";
            IVtabSource src = kind switch
            {
                "tfds" => new TfdsSource(dir, t.Tfds, t.Version),
                "archive" => ArchiveSources.Open(t, dir),
                _ => throw new ArgumentException($"--source {kind}: use tfds, archive or auto"),
            };
            var clock = Stopwatch.StartNew();
            Directory.CreateDirectory(r.GetValue(outDir)!);
            var res = VtabBuilder.Build(t, src, r.GetValue(outDir)!, (split, n) => { if (n % 1000 == 0) Console.Error.Write($"\r{split}: {n} images"); });
            Console.Error.WriteLine();
            var table = new Table().AddColumns("task", "group", "classes", "train800", "val200", "test", "seconds");
            table.AddRow(t.Name, t.Group, res.Classes.ToString(), res.Train800.ToString(), res.Val200.ToString(), res.Test.ToString(), $"{clock.Elapsed.TotalSeconds:F1}");
            AnsiConsole.Write(table);
            AnsiConsole.MarkupLine(Markup.Escape($"from {res.Source}; splits (task_adaptation {t.Source}): train800 = {res.SplitStrings["train800"]}, val200 = {res.SplitStrings["val200"]}, test = {res.SplitStrings["test"]} → {res.TaskDir}"));
            if (kind == "archive")
                AnsiConsole.MarkupLine("note: from an original archive the splits have VTAB's sizes and sources in the archive's order; TFDS shuffles when preparing, so only a TFDS-prepared copy gives the identical 800/200 images.");
            return 0;
        }));
        return c;
    }

    public static Command Fgvc()
    {
        var dataset = new Option<string>("--dataset", "-d") { Description = "cub, nabirds, flowers, dogs or cars", Required = true };
        var from = new Option<string>("--from") { Description = "the folder the original release was extracted to", Required = true };
        var outDir = new Option<string>("--out", "-o") { Description = "data root; the maps go to OUT/<task>/{train,val,test}.json (suites/fgvc.json expects data/fgvc)", Required = true };
        var valFraction = new Option<double>("--val-fraction") { Description = "share of each class of the official train held out for val (not used for flowers, which ships a val set)", DefaultValueFactory = _ => 0.1 };
        var seed = new Option<int>("--seed") { Description = "shuffle seed of the train/val split", DefaultValueFactory = _ => 42 };
        var c = new Command("fgvc", "build an FGVC task's train/val/test JSON maps from the original release (seeded, class-stratified 90/10 train/val where the release has no val)");
        foreach (var o in new Option[] { dataset, from, outDir, valFraction, seed }) c.Options.Add(o);
        c.SetAction(r => Common.Run(() =>
        {
            var res = FgvcBuilder.Build(r.GetValue(dataset)!, r.GetValue(from)!, r.GetValue(outDir)!, r.GetValue(valFraction), r.GetValue(seed));
            AnsiConsole.MarkupLine(Markup.Escape($"{res.Classes} classes: {res.Train} train, {res.Val} val ({(res.OfficialVal ? "the release's own" : "seeded split of the official train")}), {res.Test} test → {res.TaskDir}"));
            return 0;
        }));
        return c;
    }
}

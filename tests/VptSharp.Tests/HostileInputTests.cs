using System.Text;
using System.Text.Json.Nodes;
using SkiaSharp;
using VptSharp.Checkpoints;
using VptSharp.Data;
using VptSharp.Tuning;
using Xunit.Abstractions;
using static TorchSharp.torch;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

/// <summary>
/// The adversarial corpus, crafted here and run through the real `vpt` process: every case must end in one line
/// "error: …" naming the file or setting, the documented exit code, no stack trace, nothing overwritten, bounded
/// memory (the bombs' peak RSS is measured) and no hang. A summary table goes to the test output.
/// </summary>
public class HostileInputTests(ITestOutputHelper output)
{
    sealed record Case(string Name, string[] Args, int Exit, string[] Mentions, string[]? Protect = null, bool Bomb = false);

    sealed record Outcome(Case Case, Hostile.Run Run, bool Clean, bool DataLost, string Why);

    static readonly TimeSpan Hang = TimeSpan.FromSeconds(120);

    /// <summary>A tiny backbone, a folder of images and a task file trained on it: what the hostile files are made from.</summary>
    static (string Dir, string Backbone, string Data, string Task) Base()
    {
        string dir = TempDir();
        string bbPath = SaveTinyBackbone(dir, seed: 1);
        string data = MakeImageFolder(Path.Combine(dir, "data"), 3, 4);
        using var bb = BackboneLoader.Load(bbPath);
        manual_seed(1);
        var model = PromptedModel.Create(bb.Model, new PromptConfig { Tokens = 2 }, 3);
        string task = Path.Combine(dir, "task.vpt");
        TaskArtifact.FromModel(model, new BackboneRef(bb.Source, bb.Sha256, bb.Config), ["class0", "class1", "class2"], new Preprocessing { ImageSize = 32 }).Save(task);
        return (dir, bbPath, data, task);
    }

    Outcome Judge(Case c)
    {
        var hashes = (c.Protect ?? []).Where(File.Exists).ToDictionary(f => f, Hostile.Sha);
        var run = Hostile.Vpt(Hang, c.Args);
        bool lost = hashes.Any(kv => !File.Exists(kv.Key) || Hostile.Sha(kv.Key) != kv.Value);
        var lines = run.Stderr.Trim().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        string why = run.TimedOut ? "hang"
            : run.ExitCode != c.Exit ? $"exit {run.ExitCode}, expected {c.Exit}"
            : c.Exit != 0 && lines.Length != 1 ? $"{lines.Length} stderr lines"
            : c.Exit != 0 && !lines[0].StartsWith("error: ") ? "no 'error:' line"
            : run.Stderr.Contains("   at ") || run.Stderr.Contains("frame #") ? "stack trace"
            : c.Mentions.FirstOrDefault(m => !(run.Stderr + run.Stdout).Contains(m, StringComparison.OrdinalIgnoreCase)) is string miss ? $"does not mention '{miss}'"
            : lost ? "data lost" : "";
        return new Outcome(c, run, why == "", lost, why);
    }

    void Report(string title, IReadOnlyList<Outcome> outcomes)
    {
        var sb = new StringBuilder($"## {title}\n\n| case | exit | peak RSS MiB | verdict | stderr |\n|---|---:|---:|---|---|\n");
        foreach (var o in outcomes)
            sb.Append($"| {o.Case.Name} | {o.Run.ExitCode} | {o.Run.PeakRssKiB / 1024.0:F0} | {(o.Clean ? "clean" : o.Why)} | {o.Run.Stderr.Trim().Split('\n')[0].Replace("|", "\\|")} |\n");
        int crashes = outcomes.Count(o => !o.Clean && !o.Run.TimedOut && o.Why != "data lost");
        sb.Append($"\ncases {outcomes.Count}, clean {outcomes.Count(o => o.Clean)}, crashes/unclean {crashes}, hangs {outcomes.Count(o => o.Run.TimedOut)}, " +
                  $"data lost {outcomes.Count(o => o.DataLost)}, peak RSS under bombs {outcomes.Where(o => o.Case.Bomb).Select(o => o.Run.PeakRssKiB / 1024).DefaultIfEmpty(0).Max()} MiB\n");
        output.WriteLine(sb.ToString());
        File.AppendAllText(Path.Combine(Path.GetTempPath(), "vpt-hostile-report.md"), sb.ToString());
    }

    [Fact]
    public void CliCorpusEndsInOneLineErrorsWithDocumentedExitCodes()
    {
        var (dir, bb, data, task) = Base();
        string F(string name) => Path.Combine(dir, name);
        void W(string name, byte[] bytes) => File.WriteAllBytes(F(name), bytes);
        var cases = new List<Case>();
        string[] Predict(string img) => ["predict", "--task", task, img];

        // Images: decompression bombs (header-declared size), truncation, a large image that is allowed.
        W("bomb-30000.png", Hostile.Png(30000, 30000, rows: 1));
        W("bomb-15000.png", Hostile.Png(15000, 15000, rows: 2));
        W("bomb-65535x1.png", Hostile.Png(65535, 65535, rows: 0));
        var good = File.ReadAllBytes(Directory.GetFiles(Path.Combine(data, "class0"))[0]);
        W("truncated.png", Hostile.Png(64, 64, pixel: (x, y) => (byte)(x * y), keepIdat: 40));
        W("half.png", good[..(good.Length / 2)]);
        W("large-ok.png", Hostile.Png(6000, 6000, pixel: (x, y) => (byte)((x / 100 + y / 100) % 2 * 255)));
        W("empty.png", []);
        cases.Add(new("png header 30000×30000", Predict(F("bomb-30000.png")), 1, ["bomb-30000.png", "pixel limit"], Bomb: true));
        cases.Add(new("png header 15000×15000", Predict(F("bomb-15000.png")), 1, ["bomb-15000.png", "pixel limit"], Bomb: true));
        cases.Add(new("png header 65535² no data", Predict(F("bomb-65535x1.png")), 1, ["bomb-65535x1.png"], Bomb: true));
        cases.Add(new("png truncated IDAT", Predict(F("truncated.png")), 1, ["truncated.png", "truncated"]));
        cases.Add(new("png cut in half", Predict(F("half.png")), 1, ["half.png"]));
        cases.Add(new("empty image file", Predict(F("empty.png")), 1, ["empty.png"]));
        cases.Add(new("png 6000×6000 (allowed, reduced while decoding)", Predict(F("large-ok.png")), 0, ["class"], Bomb: true));
        cases.Add(new("embed of a bomb", ["embed", "--backbone", bb, "--out", F("e.npy"), F("bomb-15000.png")], 1, ["bomb-15000.png"], Bomb: true));

        // Training data: bombs and truncation in a folder; --skip-bad skips them, without it the first one is named.
        string bad = MakeImageFolder(F("bad-data"), 2, 4), bombs = MakeImageFolder(F("bomb-data"), 2, 4), truncs = MakeImageFolder(F("trunc-data"), 2, 4);
        File.Copy(F("bomb-15000.png"), Path.Combine(bad, "class0", "zz-bomb.png"));
        File.Copy(F("truncated.png"), Path.Combine(bad, "class1", "zz-trunc.png"));
        File.Copy(F("bomb-15000.png"), Path.Combine(bombs, "class0", "zz-bomb.png"));
        File.Copy(F("truncated.png"), Path.Combine(truncs, "class1", "zz-trunc.png"));
        cases.Add(new("train on a bomb", ["train", "--backbone", bb, "--data", bombs, "--epochs", "1", "--out", F("r-bomb")], 1, ["zz-bomb.png", "--skip-bad"], Bomb: true));
        cases.Add(new("train --skip-bad skips bomb + truncated", ["train", "--backbone", bb, "--data", bad, "--epochs", "1", "--warmup-epochs", "0", "--skip-bad", "--prompts", "2", "--out", F("r-skip")], 0, ["skipped 2"], Bomb: true));
        cases.Add(new("train on a truncated png", ["train", "--backbone", bb, "--data", truncs, "--epochs", "1", "--out", F("r-trunc")], 1, ["zz-trunc.png"]));

        // List files: labels beyond the class count.
        File.WriteAllText(F("labels.txt"), $"data/class0/000.png 0\ndata/class1/000.png 1000000\n");
        cases.Add(new("list file label 1000000", ["train", "--backbone", bb, "--data", F("labels.txt"), "--epochs", "1", "--out", F("r-lab")], 1, ["labels.txt:2", "1000000"]));
        File.WriteAllText(F("eval-labels.txt"), $"data/class0/000.png 7\n");
        cases.Add(new("eval label out of range", ["eval", "--task", task, "--data", F("eval-labels.txt")], 1, ["eval-labels.txt:1", "3 classes"]));
        File.WriteAllText(F("map.json"), "[1, 2]");
        cases.Add(new("JSON map not an object", ["train", "--backbone", bb, "--data", F("map.json"), "--epochs", "1", "--out", F("r-map")], 1, ["map.json"]));

        // safetensors: headers that lie.
        W("array.vpt", Hostile.Safetensors("[1,2,3]", 0));
        W("meta-num.vpt", Hostile.Safetensors("{\"__metadata__\":{\"vptsharp\":5}}", 0));
        W("overlap.safetensors", Hostile.Safetensors("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", 24));
        W("outside.safetensors", Hostile.Safetensors("{\"a\":{\"dtype\":\"F32\",\"shape\":[1000000000],\"data_offsets\":[0,4000000000]}}", 16));
        W("hugelen.safetensors", [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, (byte)'{', (byte)'}']);
        cases.Add(new("safetensors JSON-array header (task)", ["eval", "--task", F("array.vpt"), "--data", data], 1, ["array.vpt"]));
        cases.Add(new("safetensors non-string metadata (task)", ["eval", "--task", F("meta-num.vpt"), "--data", data], 1, ["meta-num.vpt", "not a string"]));
        W("meta-num.safetensors", Hostile.Safetensors("{\"__metadata__\":{\"vit_config\":{\"a\":1}}}", 0));
        cases.Add(new("safetensors non-string metadata (backbone)", ["info", F("meta-num.safetensors")], 1, ["meta-num.safetensors", "not a string"]));
        cases.Add(new("safetensors overlapping offsets", ["info", F("overlap.safetensors")], 1, ["overlap.safetensors", "overlap"]));
        cases.Add(new("safetensors offsets past the data", ["info", F("outside.safetensors")], 1, ["outside.safetensors"], Bomb: true));
        cases.Add(new("safetensors header length 2^63", ["info", F("hugelen.safetensors")], 1, ["hugelen.safetensors"], Bomb: true));

        // Task metadata: garbage, nulls, sizes that would allocate, versions.
        Case Meta(string name, Action<JsonObject> edit, int exit, params string[] mention)
        {
            string file = Hostile.TaskWith(task, F(name + ".vpt"), edit);
            return new($"task metadata {name}", ["eval", "--task", file, "--data", data], exit, [name + ".vpt", .. mention], Bomb: true);
        }
        Hostile.TaskWithRawMetadata(task, F("garbage.vpt"), "{not json");
        cases.Add(new("task metadata garbage", ["eval", "--task", F("garbage.vpt"), "--data", data], 1, ["garbage.vpt"]));
        cases.Add(Meta("sha-null", m => m["backbone"]!["sha256"] = null, 1, "sha256"));
        cases.Add(Meta("classes-null", m => m["classes"] = null, 1, "classes"));
        cases.Add(Meta("tokens-1e9", m => m["method_config"]!["tokens"] = 1e9, 1, "method_config"));
        cases.Add(Meta("tokens-500000", m => m["method_config"]!["tokens"] = 500000, 1, "prompts"));
        cases.Add(Meta("tokens-lie", m => m["method_config"]!["tokens"] = 900, 1, "tokens"));
        cases.Add(Meta("heads-0", m => m["backbone"]!["config"]!["heads"] = 0, 1, "heads"));
        cases.Add(Meta("patch-0", m => m["backbone"]!["config"]!["patch_size"] = 0, 1, "patch"));
        cases.Add(Meta("dropout-5", m => m["method_config"]!["dropout"] = 5, 1, "dropout"));
        cases.Add(Meta("format-99", m => m["format_version"] = 99, 1, "format_version"));
        cases.Add(Meta("sha-short", m => m["backbone"]!["sha256"] = "abc", 3, "sha256"));
        cases.Add(Meta("vit-h14", m => { m["backbone"]!["source"] = "random:vit-h14"; m["backbone"]!["sha256"] = new string('0', 64); }, 3, "sha256"));
        cases.Add(Meta("preprocessing-null", m => m["preprocessing"] = null, 1, "preprocessing"));
        cases.Add(Meta("method-unknown", m => m["method"] = "rm -rf", 1, "rm -rf"));

        // Backbone checkpoints: npz with bad shapes and a zip bomb; config.json claiming another size.
        Hostile.Npz(F("neg.npz"), "pos_embed.npy", "(-5, 3)", 0);
        Hostile.Npz(F("overflow.npz"), "pos_embed.npy", "(4294967296, 4294967296, 4294967296)", 0);
        Hostile.Npz(F("zipbomb.npz"), "cls.npy", "(50000000,)", 200_000_000);
        cases.Add(new("npz negative shape", ["info", F("neg.npz")], 1, ["neg.npz"]));
        cases.Add(new("npz overflowing shape", ["info", F("overflow.npz")], 1, ["overflow.npz"], Bomb: true));
        cases.Add(new("npz zip bomb (200 MB of zeros)", ["info", F("zipbomb.npz")], 1, ["zipbomb.npz", "zip bomb"], Bomb: true));
        string cfgDir = Directory.CreateDirectory(F("cfg-lie")).FullName;
        File.Copy(bb, Path.Combine(cfgDir, "model.safetensors"));
        File.WriteAllText(Path.Combine(cfgDir, "config.json"), "{\"architecture\": \"vit_huge_patch14_224\", \"model_args\": {\"embed_dim\": 2048}}");
        cases.Add(new("config.json width 2048 beside a tiny checkpoint", ["info", cfgDir], 1, ["config.json", "width"], Bomb: true));

        // Flags out of range.
        string[] Train(params string[] extra) => ["train", "--backbone", bb, "--data", data, "--epochs", "1", "--out", F("r-" + Guid.NewGuid().ToString("N")[..6]), .. extra];
        cases.Add(new("--prompt-dropout 2", Train("--prompt-dropout", "2"), 1, ["--prompt-dropout"]));
        cases.Add(new("--prompts 100000", Train("--prompts", "100000"), 1, ["--prompts"]));
        cases.Add(new("--heads 0", Train("--heads", "0"), 1, ["heads"]));
        cases.Add(new("--image-size 0", Train("--image-size", "0"), 1, ["image size"]));
        cases.Add(new("--patch-size 0", ["info", "default", "--patch-size", "0"], 1, ["patch"]));
        cases.Add(new("--threads 100000", Train("--threads", "100000"), 1, ["--threads"]));
        cases.Add(new("-k -3", ["predict", "--task", task, "-k", "-3", Directory.GetFiles(Path.Combine(data, "class0"))[0]], 1, ["--top-k"]));
        cases.Add(new("--out under /sys", ["train", "--backbone", bb, "--data", data, "--epochs", "1", "--out", "/sys/vpt-test-run"], 1, ["/sys/vpt-test-run", "writable"]));
        cases.Add(new("unknown option", ["train", "--no-such-flag"], 2, ["--no-such-flag"]));

        // Resume with other flags or a damaged state; overwrites refused.
        string run = F("run");
        var first = Hostile.Vpt(Hang, ["train", "--backbone", bb, "--data", data, "--epochs", "2", "--warmup-epochs", "0", "--prompts", "2", "--stop-after", "1", "--out", run]);
        Assert.True(first.ExitCode == 0, first.Stderr);
        string[] runFiles = [Path.Combine(run, "train-state.json"), Path.Combine(run, "best.vpt"), Path.Combine(run, "last.vpt")];
        cases.Add(new("train --out on an existing run", ["train", "--backbone", bb, "--data", data, "--epochs", "2", "--out", run], 1, ["--resume", "--force"], runFiles));
        cases.Add(new("resume with other --prompts", ["train", "--backbone", bb, "--data", data, "--epochs", "2", "--prompts", "5", "--resume", "--out", run], 1, ["prompt length", "--out"], runFiles));
        string run2 = F("run2");
        Directory.CreateDirectory(run2);
        File.WriteAllText(Path.Combine(run2, "train-state.json"), "{\"EpochsDone\": \"lots\"");
        cases.Add(new("resume with garbage train-state.json", ["train", "--backbone", bb, "--data", data, "--epochs", "2", "--resume", "--out", run2], 1, ["train-state.json"]));
        string task2 = F("task2.vpt");
        File.Copy(task, task2);
        cases.Add(new("ensemble --out X X Y", ["ensemble", "--out", task, task, task2], 1, ["also an input"], [task, task2]));
        cases.Add(new("eval --json at the task file", ["eval", "--task", task, "--data", data, "--json", task], 1, ["also an input"], [task]));
        cases.Add(new("eval --json at another task file", ["eval", "--task", task, "--data", data, "--json", task2], 1, ["not a JSON report"], [task2]));

        var outcomes = cases.Select(Judge).ToList();
        Report("vpt CLI", outcomes);
        Assert.All(outcomes, o => Assert.True(o.Clean, $"{o.Case.Name}: {o.Why}: {o.Run.Stderr}{o.Run.Stdout[..Math.Min(400, o.Run.Stdout.Length)]}"));
        // Bombs and lying sizes stay far below what the declared sizes would take (30000² RGBA = 3.4 GiB).
        Assert.All(outcomes.Where(o => o.Case.Bomb), o => Assert.True(o.Run.PeakRssKiB < 1200 * 1024, $"{o.Case.Name}: peak RSS {o.Run.PeakRssKiB / 1024} MiB"));
    }

    /// <summary>Decoding reduces large images by box averaging while reading rows; small images decode exactly as before.</summary>
    [Fact]
    public void LargeImagesAreReducedWhileDecodingAndSmallOnesAreExact()
    {
        // 2100 × 1030: the width is reduced by 2 (→ 1050), the height is kept; pixel = 100 on even columns, 200 on odd.
        var img = ImageDecoder.Decode(Hostile.Png(2100, 1030, pixel: (x, _) => (byte)(x % 2 == 0 ? 100 : 200)), "wide.png");
        Assert.Equal((1050, 1030), (img.Width, img.Height));
        Assert.All(img.Pixels, p => Assert.Equal(150, p));
        // A small PNG: the same pixels SkiaSharp's whole-image decode gives.
        string dir = MakeImageFolder(Path.Combine(TempDir(), "d"), 1, 1);
        string file = Directory.GetFiles(Path.Combine(dir, "class0"))[0];
        using var bmp = SKBitmap.Decode(file).Copy(SKColorType.Rgba8888);
        var mine = ImageDecoder.DecodeFile(file);
        var span = bmp.GetPixelSpan();
        for (int i = 0; i < bmp.Width * bmp.Height; i++)
            for (int c = 0; c < 3; c++) Assert.Equal(span[4 * i + c], mine.Pixels[3 * i + c]);
        // Truncated data is refused, not padded.
        var e = Assert.Throws<BadImageException>(() => ImageDecoder.Decode(Hostile.Png(64, 64, pixel: (x, y) => (byte)(x ^ y), keepIdat: 50), "t.png"));
        Assert.Contains("truncated", e.Message);
        Assert.Throws<BadImageException>(() => ImageDecoder.Decode(Hostile.Png(30000, 30000, rows: 0), "bomb.png"));
    }

    /// <summary>Seeded fuzzing of the three parsers that see untrusted bytes first: every input either parses or fails with
    /// the library's own exception type — never an unexpected exception, never an allocation the bytes do not justify.</summary>
    [Fact]
    public void FuzzedHeadersFailOnlyWithTheLibrarysOwnErrors()
    {
        var rng = new Random(20261201);
        var (dir, _, _, task) = Base();
        int cases = 0;

        // safetensors headers: a valid header mutated (bytes flipped, numbers replaced, structure cut).
        string valid = "{\"__metadata__\":{\"k\":\"v\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},\"b\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[16,24]}}";
        string[] numbers = ["-1", "0", "1e9", "9223372036854775807", "-9223372036854775808", "null", "\"x\"", "[]", "{}", "1.5", "true"];
        for (int i = 0; i < 1500; i++, cases++)
        {
            var h = valid.ToCharArray();
            string text = rng.Next(3) switch
            {
                0 => new string(h.Select(ch => rng.Next(20) == 0 ? (char)rng.Next(32, 127) : ch).ToArray()),
                1 => System.Text.RegularExpressions.Regex.Replace(valid, @"\d+|""F32""|""I64""|\[2,2\]", m => rng.Next(3) == 0 ? numbers[rng.Next(numbers.Length)] : m.Value),
                _ => valid[..rng.Next(valid.Length)],
            };
            var bytes = Hostile.Safetensors(text, rng.Next(40));
            if (rng.Next(10) == 0) BitConverter.GetBytes((long)rng.Next(-5, 1000)).CopyTo(bytes, 0);
            try { SafetensorsHeader.Read(new MemoryStream(bytes), "fuzz"); }
            catch (CheckpointException) { }
        }

        // Task metadata: fields replaced by values of every JSON type.
        var meta = JsonNode.Parse(SafetensorsFile.ReadMetadata(task)[TaskArtifact.MetadataKey])!.AsObject();
        var paths = new List<string[]>();
        void Walk(JsonNode? n, string[] at) { paths.Add(at); if (n is JsonObject o) foreach (var (k, v) in o) Walk(v, [.. at, k]); }
        Walk(meta, []);
        JsonNode?[] values = [null, -1, 0, 1e9, int.MaxValue, "", "x", new JsonArray(), new JsonObject(), true, 2.5, new JsonArray(null, 1)];
        for (int i = 0; i < 1500; i++, cases++)
        {
            var m = meta.DeepClone().AsObject();
            for (int j = rng.Next(1, 3); j > 0; j--)
            {
                var at = paths[rng.Next(1, paths.Count)];
                JsonNode? parent = m;
                foreach (var k in at[..^1]) parent = parent is JsonObject po ? po[k] : null;
                if (parent is not JsonObject target) continue; // an earlier mutation replaced an ancestor
                var v = values[rng.Next(values.Length)];
                target[at[^1]] = v?.DeepClone();
            }
            try
            {
                var md = TaskFileCheck.Parse(m.ToJsonString(), "fuzz.vpt");
                // Whatever passes the metadata check must also pass or fail cleanly against a backbone's shapes.
                TaskFileCheck.CheckSizes(md, Tiny, SafetensorsFile.Load(task), "fuzz.vpt");
            }
            catch (CheckpointException) { }
        }

        // PNG headers: random declared sizes, bit depths, colour types, and flipped bytes in the first chunks.
        var png = Hostile.Png(8, 8, pixel: (x, y) => (byte)(x * 30 + y));
        for (int i = 0; i < 1500; i++, cases++)
        {
            var b = (byte[])png.Clone();
            if (rng.Next(2) == 0) { System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(b.AsSpan(16), rng.Next(0, int.MaxValue)); System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(b.AsSpan(20), rng.Next(0, 1 << rng.Next(1, 31))); }
            for (int j = rng.Next(0, 4); j > 0; j--) b[rng.Next(8, Math.Min(b.Length, 60))] = (byte)rng.Next(256);
            if (rng.Next(4) == 0) b = b[..rng.Next(8, b.Length)];
            try
            {
                var img = ImageDecoder.Decode(b, "fuzz.png");
                Assert.True((long)img.Width * img.Height <= ImageDecoder.MaxPixels);
            }
            catch (BadImageException) { }
        }
        output.WriteLine($"{cases} fuzz cases, all parsed or refused with the library's own exception");
        Assert.Equal(4500, cases);
    }
}

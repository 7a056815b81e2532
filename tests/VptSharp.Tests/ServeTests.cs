using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using VptSharp.Checkpoints;
using VptSharp.Cli;
using VptSharp.Data;
using VptSharp.Inference;
using VptSharp.Tuning;
using static TorchSharp.torch;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

/// <summary>`vpt serve` as a real process on loopback: answers, errors, hot reload, metrics, and shedding under load.</summary>
public class ServeTests
{
    static string SaveTask(LoadedBackbone bb, MethodConfig cfg, string path, int seed)
    {
        manual_seed(seed);
        var model = PromptedModel.Create(bb.Model, cfg, 3);
        using (no_grad()) foreach (var (_, p) in model.TaskTensors()) p.add_(randn_like(p) * 0.5); // distinct, confident tasks
        TaskArtifact.FromModel(model, new BackboneRef(bb.Source, bb.Sha256, bb.Config), ["red", "green", "blue"], new Preprocessing { ImageSize = 32 }).Save(path);
        return path;
    }

    /// <summary>A task whose weights hold NaN is refused at load (named, listed as rejected); a task whose recorded metrics
    /// hold NaN is served, and the listings that show those metrics still answer (NaN as a named literal).</summary>
    [Fact]
    public async Task NonFiniteWeightsAreRefusedAndNonFiniteMetricsStillAnswer()
    {
        string dir = TempDir();
        string bbPath = SaveTinyBackbone(dir, seed: 3);
        string tasks = Directory.CreateDirectory(Path.Combine(dir, "tasks")).FullName;
        using (var bb = BackboneLoader.Load(bbPath))
        {
            var backbone = new BackboneRef(bb.Source, bb.Sha256, bb.Config);
            manual_seed(1);
            var model = PromptedModel.Create(bb.Model, new LinearProbeConfig(), 3);
            TaskArtifact.FromModel(model, backbone, ["red", "green", "blue"], new Preprocessing { ImageSize = 32 },
                new Dictionary<string, double> { ["train_loss"] = double.NaN, ["val_top1"] = 0.5 }).Save(Path.Combine(tasks, "nanmetric.vpt"));
            using (no_grad()) model.head.weight![0, 0] = tensor(float.NaN);
            TaskArtifact.FromModel(model, backbone, ["red", "green", "blue"], new Preprocessing { ImageSize = 32 }).Save(Path.Combine(tasks, "nanweights.vpt"));
        }
        using var server = new Server("serve", "--backbone", bbPath, "--tasks", tasks, "--port", "0", "--threads", "1", "--precision", "fp32");
        using var http = new HttpClient { BaseAddress = server.Url };
        using (var overview = JsonDocument.Parse(await http.GetStringAsync("v1/overview")))
        {
            var task = overview.RootElement.GetProperty("tasks").EnumerateArray().Single();
            Assert.Equal("nanmetric", task.GetProperty("name").GetString());
            Assert.Equal("NaN", task.GetProperty("metrics").GetProperty("train_loss").GetString());
            var rejected = overview.RootElement.GetProperty("rejected").EnumerateArray().Single();
            Assert.Equal("nanweights", rejected.GetProperty("name").GetString());
            Assert.Contains("NaN or infinite", rejected.GetProperty("reason").GetString());
        }
        var content = new ByteArrayContent(File.ReadAllBytes(Directory.GetFiles(MakeImageFolder(Path.Combine(dir, "img"), 3, 1), "*.png", SearchOption.AllDirectories)[0]));
        content.Headers.ContentType = new MediaTypeHeaderValue("image/png");
        using var answer = await http.PostAsync("v1/tasks/nanmetric/predict", content);
        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
    }

    /// <summary>A body trickling in at 2 KB/s (above Kestrel's default minimum of 240 B/s) is cut off with 408 after the
    /// grace period, instead of holding its slot for the 50 s it would take.</summary>
    [Fact]
    public async Task TricklingBodiesAreCutOffWith408()
    {
        string dir = TempDir();
        string bbPath = SaveTinyBackbone(dir, seed: 3);
        string tasks = Directory.CreateDirectory(Path.Combine(dir, "tasks")).FullName;
        using (var bb = BackboneLoader.Load(bbPath)) SaveTask(bb, new LinearProbeConfig(), Path.Combine(tasks, "lin.vpt"), 2);
        using var server = new Server("serve", "--backbone", bbPath, "--tasks", tasks, "--port", "0", "--threads", "1", "--precision", "fp32");
        using var tcp = new System.Net.Sockets.TcpClient();
        await tcp.ConnectAsync(server.Url.Host, server.Url.Port);
        var stream = tcp.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes("POST /v1/tasks/lin/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n"));
        var clock = Stopwatch.StartNew();
        using var stop = new CancellationTokenSource();
        var trickle = Task.Run(async () =>
        {
            try { for (int i = 0; i < 100 && !stop.IsCancellationRequested; i++) { await stream.WriteAsync(new byte[1000], stop.Token); await Task.Delay(500, stop.Token); } }
            catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException) { } // the server closed the connection
        });
        using var read = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var buf = new byte[4096];
        var answer = new StringBuilder();
        for (int n; (n = await stream.ReadAsync(buf, read.Token)) > 0;) answer.Append(Encoding.ASCII.GetString(buf, 0, n)); // the server closes it
        string head = answer.ToString();
        stop.Cancel();
        await trickle;
        Assert.StartsWith("HTTP/1.1 408", head);
        Assert.Contains("slower than 16 KB/s", head);
        Assert.InRange(clock.Elapsed.TotalSeconds, 3, 30); // after the 5 s grace, long before the body's 50 s
    }

    internal sealed class Server : IDisposable
    {
        public readonly Process Process;
        public readonly Uri Url;
        public Server(params string[] args)
        {
            var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            psi.ArgumentList.Add(CliDll);
            foreach (var a in args) psi.ArgumentList.Add(a);
            Process = Process.Start(psi)!;
            var deadline = DateTime.UtcNow.AddSeconds(90); // a loaded CI machine starts slowly
            while (DateTime.UtcNow < deadline)
            {
                var line = Process.StandardOutput.ReadLine() ?? throw new InvalidOperationException("vpt serve exited: " + Process.StandardError.ReadToEnd());
                int at = line.IndexOf("http://", StringComparison.Ordinal);
                if (line.StartsWith("serving") && at >= 0) { Url = new Uri(line[at..].Split(' ')[0].TrimEnd(',') + "/"); break; }
            }
            if (Url is null) throw new TimeoutException("vpt serve did not start");
            _ = Task.Run(() => { while (Process.StandardOutput.ReadLine() is not null) { } }); // keep both pipes drained
            _ = Task.Run(() => { while (Process.StandardError.ReadLine() is not null) { } });
        }
        public void Dispose() { try { Process.Kill(true); } catch (InvalidOperationException) { } Process.Dispose(); }
    }

    [Fact]
    public async Task ServesPredictsRefusesReloadsAndShedsOverload()
    {
        string dir = TempDir();
        string bbPath = SaveTinyBackbone(dir, seed: 3);
        using var bb = BackboneLoader.Load(bbPath);
        string tasks = Directory.CreateDirectory(Path.Combine(dir, "tasks")).FullName;
        SaveTask(bb, new PromptConfig { Tokens = 3 }, Path.Combine(tasks, "deep.vpt"), 1);
        SaveTask(bb, new LinearProbeConfig(), Path.Combine(tasks, "lin.vpt"), 2);
        string otherDir = Directory.CreateDirectory(Path.Combine(dir, "other")).FullName;
        using (var other = BackboneLoader.Load(SaveTinyBackbone(otherDir, seed: 4)))
            SaveTask(other, new LinearProbeConfig(), Path.Combine(tasks, "foreign.vpt"), 3);
        string images = MakeImageFolder(Path.Combine(dir, "img"), 3, 4);
        var files = Directory.GetFiles(images, "*.png", SearchOption.AllDirectories).Order().ToArray();

        // Offline answers of the deep task for every image: what every accepted request must return.
        var deep = TaskArtifact.Load(Path.Combine(tasks, "deep.vpt")).Attach(bb);
        var tf = new ImageTransform(new Preprocessing { ImageSize = 32 }, train: false);
        var expected = files.Select(f =>
        {
            var px = new float[tf.OutputLength];
            tf.Apply(FileImageDataset.Decode(f), new Random(0), px);
            using var x = tensor(px, [1, 3, 32, 32]);
            return Predictor.TopK(deep, x, ["red", "green", "blue"], 1)[0][0];
        }).ToList();

        using var server = new Server("serve", "--backbone", bbPath, "--tasks", tasks, "--port", "0", "--queue", "4", "--max-batch", "4", "--precision", "fp32", // answers are compared with fp32 offline ones
            "--max-delay-ms", "2", "--max-body-kb", "64", "--rescan-seconds", "0.3", "--threads", "1");
        using var http = new HttpClient { BaseAddress = server.Url };

        using (var list = JsonDocument.Parse((await http.GetStringAsync("v1/tasks"))))
        {
            Assert.Equal(["deep", "lin"], list.RootElement.GetProperty("tasks").EnumerateArray().Select(t => t.GetProperty("name").GetString()));
            // Both are exact prefixes: served by the one-pass multi-task engine (the answers below are checked against the plain model).
            Assert.All(list.RootElement.GetProperty("tasks").EnumerateArray(), t => Assert.True(t.GetProperty("one_pass").GetBoolean()));
            var rejected = list.RootElement.GetProperty("rejected").EnumerateArray().Single();
            Assert.Equal("foreign", rejected.GetProperty("name").GetString());
            Assert.Contains("sha256", rejected.GetProperty("reason").GetString());
        }

        async Task<HttpResponseMessage> Post(string path, byte[] body, string type = "image/png")
        {
            var content = new ByteArrayContent(body);
            content.Headers.ContentType = new MediaTypeHeaderValue(type);
            return await http.PostAsync(path, content);
        }
        var png = File.ReadAllBytes(files[0]);
        var one = await Post("v1/tasks/deep/predict?top_k=2", png);
        Assert.Equal(HttpStatusCode.OK, one.StatusCode);
        using (var doc = JsonDocument.Parse(await one.Content.ReadAsStringAsync()))
        {
            var top = doc.RootElement.GetProperty("top");
            Assert.Equal(2, top.GetArrayLength());
            Assert.Equal(expected[0].Label, top[0].GetProperty("label").GetString());
            Assert.Equal(expected[0].Probability, top[0].GetProperty("probability").GetDouble(), 5);
        }
        using (var both = JsonDocument.Parse(await (await Post("v1/predict?tasks=deep,lin", png)).Content.ReadAsStringAsync()))
            Assert.Equal(["deep", "lin"], both.RootElement.EnumerateObject().Select(p => p.Name).Order());

        // Bad requests get a status and a JSON error, never a crash.
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, (await Post("v1/tasks/deep/predict", "hello"u8.ToArray(), "text/plain")).StatusCode);
        var garbage = await Post("v1/tasks/deep/predict", new byte[] { 1, 2, 3, 4, 5 });
        Assert.Equal(HttpStatusCode.BadRequest, garbage.StatusCode);
        Assert.Contains("error", await garbage.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, (await Post("v1/tasks/deep/predict", new byte[100_000])).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await Post("v1/tasks/nope/predict", png)).StatusCode);

        // Hot reload: a new file appears in the task list without a restart.
        SaveTask(bb, new PromptConfig { Tokens = 2, Deep = false }, Path.Combine(tasks, "shallow.vpt"), 5);
        bool seen = false;
        for (int i = 0; i < 50 && !seen; i++) { await Task.Delay(200); seen = (await http.GetStringAsync("v1/tasks")).Contains("\"shallow\""); }
        Assert.True(seen, "shallow.vpt was not hot-loaded");
        using (var list = JsonDocument.Parse((await http.GetStringAsync("v1/tasks"))))
            Assert.False(list.RootElement.GetProperty("tasks").EnumerateArray().Single(t => t.GetProperty("name").GetString() == "shallow").GetProperty("one_pass").GetBoolean());
        Assert.Equal(HttpStatusCode.OK, (await Post("v1/predict?tasks=deep,shallow,lin", png)).StatusCode); // engine and per-task paths in one batch

        // Overload: 64 clients against a queue of 4 → some requests are shed; every accepted one is right.
        var load = await LoadTest.Run(server.Url, "deep", files.Select((f, i) => (File.ReadAllBytes(f), expected[i].Label)).ToList(),
            requests: 400, concurrency: 64, limit: TimeSpan.FromSeconds(60));
        Assert.Equal(0, load.Errors);
        Assert.Equal(0, load.WrongAnswers);
        Assert.True(load.Shed > 0, $"nothing was shed: {JsonSerializer.Serialize(load)}");
        Assert.True(load.Ok > 0);
        Assert.Equal(load.Sent, load.Ok + load.Shed);

        string metrics = (await http.GetStringAsync("metrics"));
        Assert.Contains("vpt_requests_total{task=\"deep\",code=\"200\"}", metrics);
        Assert.Contains("vpt_requests_total{task=\"deep\",code=\"429\"}", metrics);
        Assert.Contains("vpt_batch_size_bucket{le=\"4\"}", metrics);
        Assert.False(server.Process.HasExited);
    }
}

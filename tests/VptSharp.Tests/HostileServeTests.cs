using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using VptSharp.Checkpoints;
using VptSharp.Data;
using VptSharp.Tuning;
using Xunit.Abstractions;
using static TorchSharp.torch;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

/// <summary>The adversarial corpus against the real `vpt serve`: hostile task files in the folder (it still starts, each
/// is listed under rejected with its reason), bombs and lying requests (answered 4xx, bounded memory), path tricks,
/// label injection into /metrics — and the good task keeps answering throughout.</summary>
public class HostileServeTests(ITestOutputHelper output)
{
    /// <summary>Raw HTTP/1.1 over a socket (what HttpClient would normalise or refuse to send); returns the status code.</summary>
    static async Task<int> Raw(Uri url, string head, byte[]? body = null, bool closeWrite = false)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(url.Host, url.Port);
        var s = tcp.GetStream();
        await s.WriteAsync(Encoding.ASCII.GetBytes(head));
        if (body is not null) await s.WriteAsync(body);
        if (closeWrite) tcp.Client.Shutdown(SocketShutdown.Send);
        var buf = new byte[4096];
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        int n;
        try { n = await s.ReadAsync(buf, cts.Token); } catch (IOException) { return -1; }
        if (n == 0) return -1; // closed without an answer
        var line = Encoding.ASCII.GetString(buf, 0, n).Split("\r\n")[0];
        return int.Parse(line.Split(' ')[1]);
    }

    [Fact]
    public async Task HostileTaskFilesAndRequestsNeverPoisonTheServer()
    {
        string dir = TempDir();
        string bbPath = SaveTinyBackbone(dir, seed: 3);
        using var bb = BackboneLoader.Load(bbPath);
        string tasks = Directory.CreateDirectory(Path.Combine(dir, "tasks")).FullName;
        manual_seed(1);
        var model = PromptedModel.Create(bb.Model, new PromptConfig { Tokens = 2 }, 3);
        var bref = new BackboneRef(bb.Source, bb.Sha256, bb.Config);
        string good = Path.Combine(tasks, "good.vpt");
        TaskArtifact.FromModel(model, bref, ["r", "g", "b"], new Preprocessing { ImageSize = 32 }).Save(good);
        // Same backbone hash, but trained at image size 64: used to share micro-batches and make other tasks answer 500.
        TaskArtifact.FromModel(model, bref with { Config = bb.Config with { ImageSize = 64 } }, ["r", "g", "b"], new Preprocessing { ImageSize = 64 })
            .Save(Path.Combine(tasks, "size64.vpt"));
        Hostile.TaskWith(good, Path.Combine(tasks, "sha-null.vpt"), m => m["backbone"]!["sha256"] = null);
        Hostile.TaskWith(good, Path.Combine(tasks, "classes-null.vpt"), m => m["classes"] = null);
        Hostile.TaskWith(good, Path.Combine(tasks, "tokens-1e9.vpt"), m => m["method_config"]!["tokens"] = 1e9);
        Hostile.TaskWithRawMetadata(good, Path.Combine(tasks, "garbage.vpt"), "][");
        File.WriteAllBytes(Path.Combine(tasks, "array.vpt"), Hostile.Safetensors("[]", 0));
        Process.Start("mkfifo", Path.Combine(tasks, "fifo.vpt"))!.WaitForExit();
        string evilName = "evil\"} 1\nvpt_injected{x=\"";
        File.Copy(good, Path.Combine(tasks, evilName + ".vpt"));

        using var server = new ServeTests.Server("serve", "--backbone", bbPath, "--tasks", tasks, "--port", "0", "--max-body-kb", "256", "--rescan-seconds", "0.5", "--threads", "1");
        using var http = new HttpClient { BaseAddress = server.Url };
        var rows = new List<(string Case, string Got, bool Ok)>();
        void Row(string name, object got, bool ok) { rows.Add((name, got.ToString()!, ok)); }

        using (var list = JsonDocument.Parse(await http.GetStringAsync("v1/tasks")))
        {
            var served = list.RootElement.GetProperty("tasks").EnumerateArray().Select(t => t.GetProperty("name").GetString()).Order().ToList();
            var rejected = list.RootElement.GetProperty("rejected").EnumerateArray().ToDictionary(t => t.GetProperty("name").GetString()!, t => t.GetProperty("reason").GetString()!);
            Row("served despite 8 hostile files", string.Join(",", served), served.SequenceEqual(new[] { evilName, "good" }.Order()));
            foreach (var (name, mention) in new[] { ("size64", "64"), ("sha-null", "sha256"), ("classes-null", "classes"), ("tokens-1e9", "method_config"),
                         ("garbage", "garbage.vpt"), ("array", "array.vpt"), ("fifo", "regular file") })
                Row($"rejected {name}", rejected.GetValueOrDefault(name) ?? "(not listed)", rejected.GetValueOrDefault(name)?.Contains(mention) == true);
        }

        async Task<HttpStatusCode> Post(string path, byte[] body)
        {
            var content = new ByteArrayContent(body);
            content.Headers.ContentType = new MediaTypeHeaderValue("image/png");
            return (await http.PostAsync(path, content)).StatusCode;
        }
        var png = File.ReadAllBytes(Directory.GetFiles(MakeImageFolder(Path.Combine(dir, "img"), 1, 1), "*.png", SearchOption.AllDirectories)[0]);
        Row("good task answers", await Post("v1/tasks/good/predict", png), await Post("v1/tasks/good/predict", png) == HttpStatusCode.OK);

        long before = Hostile.VmHwmKiB(server.Process.Id);
        var bombs = await Task.WhenAll(Enumerable.Range(0, 3).Select(_ => Post("v1/tasks/good/predict", Hostile.Png(15000, 15000, rows: 2))));
        Row("3 concurrent 15000² bombs", string.Join(",", bombs.Select(b => (int)b)), bombs.All(b => b == HttpStatusCode.RequestEntityTooLarge));
        var bomb30 = await Post("v1/predict", Hostile.Png(30000, 30000, rows: 1));
        Row("30000² bomb to /v1/predict", (int)bomb30, bomb30 == HttpStatusCode.RequestEntityTooLarge);
        long after = Hostile.VmHwmKiB(server.Process.Id);
        Row("peak RSS growth under the bombs (MiB)", (after - before) / 1024, after - before < 200 * 1024);
        var trunc = await Post("v1/tasks/good/predict", Hostile.Png(64, 64, pixel: (x, y) => (byte)(x ^ y), keepIdat: 40));
        Row("truncated png", (int)trunc, trunc == HttpStatusCode.BadRequest);

        int dots = await Raw(server.Url, $"POST /v1/tasks/%2e%2e/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {png.Length}\r\n\r\n", png);
        Row("/v1/tasks/%2e%2e/predict", dots, dots == 404);
        int big = await Raw(server.Url, "POST /v1/tasks/good/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 31457280\r\n\r\n");
        Row("30 MB Content-Length, body never sent", big, big == 413);
        int liar = await Raw(server.Url, "POST /v1/tasks/good/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n", png[..10], closeWrite: true);
        Row("Content-Length 1000, 10 bytes sent, then FIN", liar == -1 ? "closed" : liar, liar is 400 or -1); // a client that hangs up gets no answer, and no 500
        int shortLie = await Raw(server.Url, "POST /v1/tasks/good/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 10\r\n\r\n", png);
        Row($"Content-Length 10, {png.Length} bytes sent", shortLie, shortLie == 400);
        long streamBefore = Hostile.VmHwmKiB(server.Process.Id);
        var chunked = new StreamContent(new MemoryStream(new byte[30 << 20]));
        chunked.Headers.ContentType = new MediaTypeHeaderValue("image/png");
        var req = new HttpRequestMessage(HttpMethod.Post, "v1/tasks/good/predict") { Content = chunked };
        req.Headers.TransferEncodingChunked = true;
        HttpStatusCode streamed;
        try { streamed = (await http.SendAsync(req)).StatusCode; } catch (HttpRequestException) { streamed = HttpStatusCode.RequestEntityTooLarge; } // server may close mid-upload
        long streamAfter = Hostile.VmHwmKiB(server.Process.Id);
        Row("30 MB chunked body (no length)", $"{(int)streamed}, +{(streamAfter - streamBefore) / 1024} MiB", streamed == HttpStatusCode.RequestEntityTooLarge && streamAfter - streamBefore < 25 * 1024);

        var evil = await Post("v1/tasks/" + Uri.EscapeDataString(evilName) + "/predict", png);
        await Post("v1/tasks/no-such-task-" + Guid.NewGuid().ToString("N") + "/predict", png);
        string metrics = await http.GetStringAsync("metrics");
        bool injected = metrics.Split('\n').Any(l => l.StartsWith("vpt_injected"));
        Row("/metrics label injection", injected ? "injected" : "escaped", evil == HttpStatusCode.OK && !injected && metrics.Contains("evil\\\"} 1\\nvpt_injected"));
        Row("/metrics unknown task label", metrics.Contains("no-such-task") ? "per-name" : "(unknown)", !metrics.Contains("no-such-task") && metrics.Contains("(unknown)"));

        // Hot reload still works after all that, and the good task still answers.
        File.Copy(good, Path.Combine(tasks, "late.vpt"));
        bool seen = false;
        for (int i = 0; i < 60 && !seen; i++) { await Task.Delay(250); seen = (await http.GetStringAsync("v1/tasks")).Contains("\"late\""); }
        Row("hot reload after the hostile files", seen, seen);
        var last = await Post("v1/tasks/good/predict", png);
        Row("good task still answers", (int)last, last == HttpStatusCode.OK && !server.Process.HasExited);

        var badHost = Hostile.Vpt(TimeSpan.FromSeconds(60), "serve", "--backbone", bbPath, "--tasks", tasks, "--host", "not a host", "--port", "0");
        Row("--host 'not a host'", $"exit {badHost.ExitCode}: {badHost.Stderr.Trim()}", badHost.ExitCode == 1 && badHost.Stderr.Trim().Split('\n').Length == 1 && badHost.Stderr.Contains("--host"));

        var sb = new StringBuilder("## vpt serve\n\n| case | got | verdict |\n|---|---|---|\n");
        foreach (var (c, got, ok) in rows) sb.Append($"| {c.Replace("\n", "\\n")} | {got.Replace("|", "\\|").Replace("\n", "\\n")} | {(ok ? "clean" : "FAILED")} |\n");
        sb.Append($"\ncases {rows.Count}, clean {rows.Count(r => r.Ok)}, server peak RSS {Hostile.VmHwmKiB(server.Process.Id) / 1024} MiB\n");
        output.WriteLine(sb.ToString());
        File.AppendAllText(Path.Combine(Path.GetTempPath(), "vpt-hostile-report.md"), sb.ToString());
        Assert.All(rows, r => Assert.True(r.Ok, $"{r.Case}: {r.Got}"));
    }
}

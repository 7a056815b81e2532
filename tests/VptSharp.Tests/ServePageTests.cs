using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using Microsoft.Playwright;
using VptSharp.Checkpoints;
using VptSharp.Cli;
using VptSharp.Tuning;
using VptSharp.Data;
using VptSharp.Inference;
using static TorchSharp.torch;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

/// <summary>
/// The page of `vpt serve` in a real browser: Debian's Chromium driven by Playwright against the real server process on
/// loopback. Nothing is downloaded: Playwright's driver ships inside its NuGet package and the browser is the system's.
/// </summary>
public class ServePageTests
{
    /// <summary>Debian's Chromium (`apt-get install chromium`; .ci/run installs it). Never skipped: without it the test fails.</summary>
    const string Chromium = "/usr/bin/chromium";

    /// <summary>A task file name and labels as hostile as a file name allows: if any reached the DOM as HTML, an img element
    /// with src "x" would appear (its handler is also blocked by the page's CSP, so the test looks for the element itself).</summary>
    const string HostileName = "<img src=x onerror=window.pwned=1>";
    static readonly string[] HostileLabels = ["<b>bold</b>", "a & b <i>", "<script>window.pwned=2</script>"];

    static void SaveTask(LoadedBackbone bb, MethodConfig cfg, string path, int seed, string[] classes)
    {
        manual_seed(seed);
        var model = PromptedModel.Create(bb.Model, cfg, classes.Length);
        using (no_grad()) foreach (var (_, p) in model.TaskTensors()) p.add_(randn_like(p) * 0.5); // distinct, confident tasks
        TaskArtifact.FromModel(model, new BackboneRef(bb.Source, bb.Sha256, bb.Config), classes, new Preprocessing { ImageSize = 32 }).Save(path);
    }

    /// <summary>How the page prints a probability (page.js fmtPct).</summary>
    static string Percent(double p) => p > 0 && p < 0.0005 ? "<0.1%" : (p * 100).ToString(p >= 0.9995 ? "F0" : "F1", CultureInfo.InvariantCulture) + "%";

    [Fact]
    public async Task PageListsTasksAnswersLikeTheApiShowsItsErrorsAndRendersNamesAsText()
    {
        Assert.True(File.Exists(Chromium), $"{Chromium} not found: install Debian's browser with 'apt-get install chromium' (.ci/run does)");
        string dir = TempDir();
        string bbPath = SaveTinyBackbone(dir, seed: 3);
        string tasks = Directory.CreateDirectory(Path.Combine(dir, "tasks")).FullName;
        using (var bb = BackboneLoader.Load(bbPath))
        {
            SaveTask(bb, new PromptConfig { Tokens = 3 }, Path.Combine(tasks, "deep.vpt"), 1, ["red", "green", "blue"]);
            SaveTask(bb, new LinearProbeConfig(), Path.Combine(tasks, "lin.vpt"), 2, HostileLabels);
            SaveTask(bb, new PromptConfig { Tokens = 2, Deep = false }, Path.Combine(tasks, HostileName + ".vpt"), 3, ["cat", "dog", "bird", "fish"]);
        }
        string[] names = [HostileName, "deep", "lin"]; // ordinal order, as the page lists them
        string images = MakeImageFolder(Path.Combine(dir, "img"), 3, 1);
        string png = Directory.GetFiles(images, "*.png", SearchOption.AllDirectories).Order().First();
        byte[] corrupt = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 1, 2, 3, 4, 5, 6, 7, 8]; // a PNG signature, then junk

        using var server = new ServeTests.Server("serve", "--backbone", bbPath, "--tasks", tasks, "--port", "0", "--threads", "1", "--max-delay-ms", "2", "--precision", "fp32"); // fp32 answers and labels (auto picks bf16 on avx512_bf16 CPUs)
        using var http = new HttpClient { BaseAddress = server.Url };

        // Content types and security headers of the page and its files.
        foreach (var (path, type) in new[] { ("", "text/html"), ("page/page.js", "text/javascript"), ("page/page.css", "text/css"), ("page/icon.svg", "image/svg+xml") })
        {
            using var res = await http.GetAsync(path);
            Assert.Equal(HttpStatusCode.OK, res.StatusCode);
            Assert.Equal(type, res.Content.Headers.ContentType!.MediaType);
            Assert.Equal(ServePage.ContentSecurityPolicy, res.Headers.GetValues("Content-Security-Policy").Single());
            Assert.Equal("nosniff", res.Headers.GetValues("X-Content-Type-Options").Single());
        }
        Assert.Contains("default-src 'self'", ServePage.ContentSecurityPolicy);
        Assert.DoesNotContain("unsafe", ServePage.ContentSecurityPolicy);
        string html = await http.GetStringAsync("");
        Assert.DoesNotContain("<style", html);
        Assert.DoesNotContain("style=", html);
        Assert.DoesNotContain("<script>", html); // only <script src=...>

        // The overview's parameter counts in closed form (d = 32, L = 2, 3 classes → head 32·3 + 3 = 99).
        using (var overview = JsonDocument.Parse(await http.GetStringAsync("v1/overview")))
        {
            var byName = overview.RootElement.GetProperty("tasks").EnumerateArray().ToDictionary(t => t.GetProperty("name").GetString()!);
            Assert.Equal(names, byName.Keys);
            long Trainable(string n, string part) => byName[n].GetProperty("trainable_parameters").GetProperty(part).GetInt64();
            Assert.Equal(2 * 3 * 32, Trainable("deep", "method"));       // VPT-deep: L·p·d
            Assert.Equal(99, Trainable("deep", "head"));
            Assert.Equal(0, Trainable("lin", "method"));
            Assert.Equal(2 * 32, Trainable(HostileName, "method"));      // VPT-shallow: p·d
            Assert.Equal(4 * 32 + 4, Trainable(HostileName, "head"));
            Assert.True(byName["deep"].GetProperty("one_pass").GetBoolean());
            Assert.False(byName[HostileName].GetProperty("one_pass").GetBoolean());
            Assert.Equal("fp32", byName["deep"].GetProperty("precision").GetString());
        }

        // What the JSON API answers for the image and for the corrupt bytes: the page must show exactly this.
        async Task<(HttpStatusCode, JsonDocument)> Predict(byte[] body)
        {
            var content = new ByteArrayContent(body);
            content.Headers.ContentType = new MediaTypeHeaderValue("image/png");
            using var res = await http.PostAsync("v1/predict?top_k=3", content);
            return (res.StatusCode, JsonDocument.Parse(await res.Content.ReadAsStringAsync()));
        }
        var (okStatus, apiAnswer) = await Predict(File.ReadAllBytes(png));
        Assert.Equal(HttpStatusCode.OK, okStatus);
        var (badStatus, apiError) = await Predict(corrupt);
        Assert.Equal(HttpStatusCode.BadRequest, badStatus);
        string apiErrorText = apiError.RootElement.GetProperty("error").GetString()!;

        using var playwright = await Playwright.CreateAsync();
        await using var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions { ExecutablePath = Chromium, Headless = true });
        var context = await browser.NewContextAsync(new BrowserNewContextOptions
        {
            ViewportSize = new ViewportSize { Width = 1280, Height = 900 }, ReducedMotion = ReducedMotion.Reduce, ColorScheme = ColorScheme.Light,
        });
        var page = await context.NewPageAsync();
        var problems = new List<string>();
        page.PageError += (_, e) => problems.Add("page error: " + e);
        page.Console += (_, m) => { if (m.Type == "error" && !m.Text.Contains("status of 400")) problems.Add("console: " + m.Text); };
        var posts = new List<string>();
        page.Request += (_, r) => { if (r.Method == "POST") posts.Add(r.Url); };
        await page.GotoAsync(server.Url.ToString());

        // The task table lists every task, names as text.
        var rows = page.Locator("#tasks-body tr");
        await Assertions.Expect(rows).ToHaveCountAsync(3);
        Assert.Equal(names, await page.Locator("#tasks-body .task-name").AllTextContentsAsync());
        await Assertions.Expect(page.Locator("#bb-sha")).ToHaveAttributeAsync("title", (await BackboneSha(http)));

        // Keyboard: Tab reaches the file input, and the focused input shows a visible focus ring on its label.
        await page.Locator("body").FocusAsync();
        string? focused = null;
        for (int i = 0; i < 20 && focused != "file"; i++)
        {
            await page.Keyboard.PressAsync("Tab");
            focused = await page.EvaluateAsync<string>("() => document.activeElement && document.activeElement.id");
        }
        Assert.Equal("file", focused);
        Assert.NotEqual("none", await page.EvaluateAsync<string>("() => getComputedStyle(document.querySelector('label[for=file]')).outlineStyle"));

        // An image: one card per task with the API's top-1 label and probability; reserved space, so nothing moves.
        var before = await page.Locator("#results").BoundingBoxAsync();
        await page.Locator("#file").SetInputFilesAsync(png);
        await Assertions.Expect(page.Locator("#status")).ToContainTextAsync("answers in");
        var after = await page.Locator("#results").BoundingBoxAsync();
        // One request for all selected tasks, each name URL-encoded.
        Assert.Equal([server.Url.AbsoluteUri + "v1/predict?tasks=" + string.Join(",", names.Select(Uri.EscapeDataString)) + "&top_k=3"], posts);
        Assert.Equal(before!.Height, after!.Height, 0.5);
        Assert.Equal(before.Width, after.Width, 0.5);
        var cards = page.Locator("#results .card");
        await Assertions.Expect(cards).ToHaveCountAsync(3);
        for (int i = 0; i < 3; i++)
        {
            var card = cards.Nth(i);
            string task = (await card.GetAttributeAsync("data-task"))!;
            Assert.Equal(names[i], task);
            Assert.Equal(names[i], await card.Locator(".card-title").TextContentAsync());
            var top = apiAnswer.RootElement.GetProperty(task).GetProperty("top");
            Assert.Equal(top[0].GetProperty("label").GetString(), await card.Locator(".row.top .row-label").TextContentAsync());
            Assert.Equal(Percent(top[0].GetProperty("probability").GetDouble()), await card.Locator(".row.top .row-prob").TextContentAsync());
            Assert.Equal(top.EnumerateArray().Select(s => s.GetProperty("label").GetString()!), await card.Locator(".row-label").AllTextContentsAsync());
        }
        // Labels holding HTML are text: all three appear verbatim in the linear task's card, and no element was made from them.
        Assert.Equal(HostileLabels.Order(), (await cards.Nth(2).Locator(".row-label").AllTextContentsAsync()).Order());
        Assert.Equal(0, await page.Locator("img[src='x'], #results b, #results i, #results script, #tasks b, #tasks i, #tasks script").CountAsync());
        Assert.Equal("undefined", await page.EvaluateAsync<string>("() => typeof window.pwned"));

        // The live panel reads the server's metrics: batches appear in the histogram.
        await Assertions.Expect(page.Locator("#m-hist")).ToHaveAttributeAsync("aria-label", new System.Text.RegularExpressions.Regex("^Batches by size since start"), new() { Timeout = 10_000 });
        string shots = Directory.CreateDirectory(Path.Combine(AppContext.BaseDirectory, "screenshots")).FullName;
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(shots, "serve-page-test.png"), FullPage = true });

        // Dropping and pasting the image work like the picker: one more request each, the same answers.
        foreach (var gesture in new[] { "drop", "paste" })
        {
            await page.EvaluateAsync(@"([gesture, b64]) => {
                const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
                const data = new DataTransfer();
                data.items.add(new File([bytes], gesture + '.png', { type: 'image/png' }));
                if (gesture === 'drop') document.getElementById('drop').dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
                else document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }));
            }", new object[] { gesture, Convert.ToBase64String(File.ReadAllBytes(png)) });
            await Assertions.Expect(page.Locator("#status")).ToContainTextAsync($"for {gesture}.png");
            Assert.Equal(apiAnswer.RootElement.GetProperty("deep").GetProperty("top")[0].GetProperty("label").GetString(),
                await cards.Nth(1).Locator(".row.top .row-label").TextContentAsync());
        }
        Assert.Equal(3, posts.Count);

        // Deselecting a task asks the others only, in one request; its card goes.
        await page.Locator("#sel-1").UncheckAsync(); // "deep"
        await Assertions.Expect(cards).ToHaveCountAsync(2);
        await Assertions.Expect(page.Locator("#status")).ToContainTextAsync("2 answers in");
        await page.Locator("#sel-1").CheckAsync();
        await Assertions.Expect(page.Locator("#status")).ToContainTextAsync("3 answers in");

        // A corrupt image: the API's own error message, verbatim.
        await page.Locator("#file").SetInputFilesAsync(new FilePayload { Name = "corrupt.png", MimeType = "image/png", Buffer = corrupt });
        await Assertions.Expect(page.Locator("#error")).ToBeVisibleAsync();
        Assert.Equal(apiErrorText, await page.Locator("#error-body").TextContentAsync());
        Assert.StartsWith("HTTP 400", await page.Locator("#error-head").TextContentAsync());
        await Assertions.Expect(cards).ToHaveCountAsync(3);
        Assert.Equal(0, await page.Locator("#results .row.top").CountAsync()); // no stale answer beside the error

        // Phone width: nothing wider than the screen.
        await page.SetViewportSizeAsync(390, 844);
        Assert.True(await page.EvaluateAsync<bool>("() => document.documentElement.scrollWidth <= window.innerWidth"), "the page scrolls sideways at 390 px");

        Assert.Empty(problems); // no CSP or Trusted Types violation, no script error

        // With --bf16 the one-pass tasks say so; a task outside the engine still runs in fp32.
        using var bf16 = new ServeTests.Server("serve", "--backbone", bbPath, "--tasks", tasks, "--port", "0", "--threads", "1", "--bf16");
        using var http16 = new HttpClient { BaseAddress = bf16.Url };
        using var overview16 = JsonDocument.Parse(await http16.GetStringAsync("v1/overview"));
        var precision = overview16.RootElement.GetProperty("tasks").EnumerateArray().ToDictionary(t => t.GetProperty("name").GetString()!, t => t.GetProperty("precision").GetString());
        Assert.Equal("bf16 backbone, fp32 head", precision["deep"]);
        Assert.Equal("bf16 backbone, fp32 head", precision["lin"]);
        Assert.Equal("fp32", precision[HostileName]);
    }

    static async Task<string> BackboneSha(HttpClient http)
    {
        using var doc = JsonDocument.Parse(await http.GetStringAsync("v1/tasks"));
        return doc.RootElement.GetProperty("backbone").GetProperty("sha256").GetString()!;
    }

    [Fact]
    public void StatsReadTheMetricsText()
    {
        var metrics = new ServeMetrics();
        metrics.Request("deep", 200, TimeSpan.FromMilliseconds(20));
        metrics.Request("*", 200, TimeSpan.FromMilliseconds(40));
        metrics.Request("deep", 429, TimeSpan.FromMilliseconds(1));
        metrics.Request("<b>x\"y</b>", 400, TimeSpan.FromMilliseconds(3)); // a task name with quotes and HTML
        metrics.Batch(1, TimeSpan.FromMilliseconds(5));
        metrics.Batch(3, TimeSpan.FromMilliseconds(9));
        metrics.Batch(3, TimeSpan.FromMilliseconds(9));
        using var doc = JsonDocument.Parse(JsonSerializer.Serialize(ServePage.Stats(metrics.Prometheus(2, 7), 12.5, "v")));
        var s = doc.RootElement;
        Assert.Equal(7, s.GetProperty("queue_length").GetInt64());
        Assert.Equal(2, s.GetProperty("tasks_loaded").GetInt64());
        Assert.Equal(4, s.GetProperty("requests").GetProperty("total").GetInt64());
        Assert.Equal(2, s.GetProperty("requests").GetProperty("by_code").GetProperty("200").GetInt64());
        Assert.Equal(1, s.GetProperty("requests").GetProperty("by_code").GetProperty("429").GetInt64());
        Assert.Equal(1, s.GetProperty("requests").GetProperty("by_code").GetProperty("400").GetInt64());
        Assert.Equal(4, s.GetProperty("latency_seconds").GetProperty("count").GetInt64());
        Assert.Equal(0.064, s.GetProperty("latency_seconds").GetProperty("sum").GetDouble(), 9);
        var batches = s.GetProperty("batches");
        Assert.Equal(3, batches.GetProperty("count").GetInt64());
        Assert.Equal(7, batches.GetProperty("images").GetInt64());
        Assert.Equal(0.023, batches.GetProperty("seconds").GetDouble(), 9);
        // Cumulative buckets as exposed: ≤1 → 1 batch, ≤2 → 1, ≤4 → 3, …, +Inf → 3.
        var buckets = batches.GetProperty("size_buckets").EnumerateArray().Select(b => (b.GetProperty("le").GetString(), b.GetProperty("count").GetInt64())).ToList();
        Assert.Equal(("1", 1L), buckets[0]);
        Assert.Equal(("2", 1L), buckets[1]);
        Assert.Equal(("4", 3L), buckets[2]);
        Assert.Equal(("+Inf", 3L), buckets[^1]);
        Assert.Equal(9, buckets.Count);
        Assert.Equal(12.5, s.GetProperty("uptime_seconds").GetDouble());
    }
}

// Screenshots of the `vpt serve` page for the docs, in Debian's Chromium (no browser download): desktop and phone
// width, after a burst of requests (so the live panel shows batching) and one image asked of the selected tasks.
//   dotnet run -c Release --project tools/ServePageShots -- URL IMAGE OUT_DIR [--deselect TASK]...
using System.Net.Http.Headers;
using Microsoft.Playwright;

if (args.Length < 3) { Console.Error.WriteLine("usage: ServePageShots URL IMAGE OUT_DIR [--deselect TASK]..."); return 2; }
var url = new Uri(args[0].TrimEnd('/') + "/");
string image = args[1], outDir = Directory.CreateDirectory(args[2]).FullName;
var deselect = args.Skip(3).Chunk(2).Where(p => p.Length == 2 && p[0] == "--deselect").Select(p => p[1]).ToList();

// A burst of concurrent requests: the server micro-batches them, which the live panel then shows.
using (var http = new HttpClient { BaseAddress = url })
{
    var bytes = File.ReadAllBytes(image);
    await Task.WhenAll(Enumerable.Range(0, 48).Select(async i =>
    {
        await Task.Delay(i * 15);
        var content = new ByteArrayContent(bytes);
        content.Headers.ContentType = new MediaTypeHeaderValue("image/png");
        using var res = await http.PostAsync("v1/predict?top_k=1", content);
    }));
}

using var playwright = await Playwright.CreateAsync();
await using var browser = await playwright.Chromium.LaunchAsync(new() { ExecutablePath = "/usr/bin/chromium", Headless = true });
// Desktop: the whole page. Phone: its first 1,300 CSS pixels (header, image, answers); the rest is the task list.
foreach (var (name, width, height, scale, clip) in new[] { ("serve-page.png", 1280, 860, 1f, 0), ("serve-page-phone.png", 390, 844, 2f, 1300) })
{
    var context = await browser.NewContextAsync(new()
    {
        ViewportSize = new() { Width = width, Height = height }, DeviceScaleFactor = scale,
        ColorScheme = ColorScheme.Light, ReducedMotion = ReducedMotion.Reduce,
    });
    var page = await context.NewPageAsync();
    await page.GotoAsync(url.ToString());
    await page.Locator("#tasks-body tr").First.WaitForAsync();
    foreach (var task in deselect)
        await page.Locator("#tasks-body tr").Filter(new() { HasText = task }).Locator("input[type=checkbox]").UncheckAsync();
    await page.Locator("#file").SetInputFilesAsync(image);
    await page.Locator("#status").Filter(new() { HasText = "answers in" }).Or(page.Locator("#status").Filter(new() { HasText = "answer in" })).WaitForAsync();
    await page.WaitForTimeoutAsync(2500); // one more metrics poll
    await page.EvaluateAsync("() => document.activeElement && document.activeElement.blur()");
    string path = Path.Combine(outDir, name);
    await page.ScreenshotAsync(new() { Path = path, FullPage = true, Clip = clip > 0 ? new() { X = 0, Y = 0, Width = width, Height = clip } : null });
    Console.WriteLine($"{path} ({new FileInfo(path).Length:N0} bytes)");
    await context.CloseAsync();
}
return 0;

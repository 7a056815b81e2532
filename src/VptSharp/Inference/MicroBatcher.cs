using System.Diagnostics;
using System.Threading.Channels;

namespace VptSharp.Inference;

/// <summary>
/// Collects concurrent requests into batches: a single worker takes the first waiting request, then keeps taking more
/// until <c>maxBatch</c> are in hand or <c>maxDelay</c> has passed since the first, and processes them in one call.
/// The queue is bounded: when it is full, <see cref="TryEnqueue"/> refuses at once, so overload is shed (an HTTP 429)
/// instead of growing memory and latency without bound.
/// </summary>
public sealed class MicroBatcher<TIn, TOut> : IAsyncDisposable
{
    readonly Func<IReadOnlyList<TIn>, IReadOnlyList<TOut>> process;
    readonly int maxBatch;
    readonly TimeSpan maxDelay;
    readonly Channel<(TIn Item, TaskCompletionSource<TOut> Done)> queue;
    readonly Task worker;
    readonly CancellationTokenSource stop = new();
    int queued;

    /// <summary>Called after each batch with its size and how long processing took.</summary>
    public event Action<int, TimeSpan>? BatchProcessed;

    public MicroBatcher(Func<IReadOnlyList<TIn>, IReadOnlyList<TOut>> process, int maxBatch, TimeSpan maxDelay, int queueCapacity)
    {
        if (maxBatch < 1 || queueCapacity < 1) throw new ArgumentException("max batch and queue capacity must be at least 1");
        this.process = process;
        QueueCapacity = queueCapacity;
        this.maxBatch = maxBatch;
        this.maxDelay = maxDelay;
        queue = Channel.CreateBounded<(TIn, TaskCompletionSource<TOut>)>(new BoundedChannelOptions(queueCapacity)
        {
            SingleReader = true, FullMode = BoundedChannelFullMode.Wait, // Wait + TryWrite = refuse when full
        });
        worker = Task.Factory.StartNew(Loop, TaskCreationOptions.LongRunning).Unwrap();
    }

    /// <summary>Most requests that may wait; more are refused.</summary>
    public int QueueCapacity { get; }

    /// <summary>Requests waiting for a batch.</summary>
    public int QueueLength => Volatile.Read(ref queued);

    /// <summary>Queues one request; false (and no result) when the queue is full.</summary>
    public bool TryEnqueue(TIn item, out Task<TOut> result)
    {
        var done = new TaskCompletionSource<TOut>(TaskCreationOptions.RunContinuationsAsynchronously);
        result = done.Task;
        if (!queue.Writer.TryWrite((item, done))) return false;
        Interlocked.Increment(ref queued);
        return true;
    }

    async Task Loop()
    {
        var batch = new List<(TIn Item, TaskCompletionSource<TOut> Done)>(maxBatch);
        var reader = queue.Reader;
        try
        {
            while (await reader.WaitToReadAsync(stop.Token))
            {
                batch.Clear();
                var deadline = Stopwatch.StartNew();
                while (batch.Count < maxBatch)
                {
                    if (reader.TryRead(out var next)) { batch.Add(next); continue; }
                    var left = maxDelay - deadline.Elapsed;
                    if (batch.Count > 0 && left <= TimeSpan.Zero) break;
                    if (batch.Count == 0) { if (!await reader.WaitToReadAsync(stop.Token)) break; continue; }
                    using var wait = CancellationTokenSource.CreateLinkedTokenSource(stop.Token);
                    wait.CancelAfter(left);
                    try { if (!await reader.WaitToReadAsync(wait.Token)) break; }
                    catch (OperationCanceledException) when (!stop.IsCancellationRequested) { break; } // max delay reached
                }
                if (batch.Count == 0) continue;
                Interlocked.Add(ref queued, -batch.Count);
                var clock = Stopwatch.StartNew();
                try
                {
                    var outputs = process(batch.Select(b => b.Item).ToList());
                    if (outputs.Count != batch.Count) throw new InvalidOperationException($"batch of {batch.Count} produced {outputs.Count} results");
                    for (int i = 0; i < batch.Count; i++) batch[i].Done.TrySetResult(outputs[i]);
                }
                catch (Exception e)
                {
                    foreach (var b in batch) b.Done.TrySetException(e); // every caller learns of the failure; the worker lives on
                }
                BatchProcessed?.Invoke(batch.Count, clock.Elapsed);
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested) { }
        while (reader.TryRead(out var left)) left.Done.TrySetCanceled();
    }

    public async ValueTask DisposeAsync()
    {
        queue.Writer.TryComplete();
        stop.Cancel();
        try { await worker; } catch (OperationCanceledException) { }
        stop.Dispose();
    }
}
